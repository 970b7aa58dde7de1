"""Rule compute_importance: what a method keeps from a trained task (MAG: freezing values)."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.runtime import runtime_for
from clpipe.steps.importance import compute_importance

with log_to(smk.log[0]):
    compute_importance(
        model_in=smk.input.model,
        data=smk.input.data,
        progress=smk.input.get("progress"),
        previous=smk.input.get("previous"),
        spec=smk.params.spec,
        output=smk.output.importance,
        runtime=runtime_for(smk),
    )
