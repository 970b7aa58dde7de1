"""Rule init_model: the seeded random initialisation every arm starts from."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.runtime import runtime_for
from clpipe.steps.init import init_model

with log_to(smk.log[0]):
    init_model(
        spec=smk.params.spec,
        output=smk.output.model,
        runtime=runtime_for(smk),
    )
