"""Rule evaluate: test accuracy and loss of one model on every task."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.steps.evaluate import evaluate


def runtime():
    """Made only when the model is evaluated here (it imports torch, claims a GPU)."""
    from clpipe.runtime import runtime_for

    return runtime_for(smk)


with log_to(smk.log[0]):
    wants_gpu = int(getattr(smk.resources, "gpu", 0) or 0) > 0
    evaluate(
        model_in=smk.input.model,
        data=smk.input.data,
        spec=smk.params.spec,
        output=smk.output.evaluation,
        runtime=runtime,
        # the training job's own pass over this model, when it is this evaluation's
        scripts_dir=smk.scriptdir,
        device=smk.config.get("device", "auto") if wants_gpu else "cpu",
        threads=int(smk.threads),
    )
