"""Rule init_model: the seeded random initialisation every arm starts from."""

from clpipe import steps
from clpipe.logs import log_to
from clpipe.runtime import runtime_for

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts

with log_to(smk.log[0]):
    steps.init_model(
        spec=smk.params.spec,
        output=smk.output.model,
        runtime=runtime_for(smk),
    )
