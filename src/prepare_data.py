"""Rule prepare_data: decode an experiment's tasks into one tensor file, once."""

from clpipe import steps
from clpipe.logs import log_to

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts

with log_to(smk.log[0]):
    steps.prepare_data(
        data_dir=smk.params.data_dir,
        spec=smk.params.spec,
        output=smk.output.data,
    )
