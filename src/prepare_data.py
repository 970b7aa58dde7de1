"""Rule prepare_data: decode an experiment's tasks into one tensor file, once."""

from clpipe.logs import log_to
from clpipe.steps.data import prepare_data

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts

with log_to(smk.log[0]):
    prepare_data(
        data_dir=smk.params.data_dir,
        spec=smk.params.spec,
        output=smk.output.data,
    )
