"""Rule evaluate: test accuracy and loss of one model on every task."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job


def runtime():
    """Made only when the model is evaluated here (it imports torch, claims a GPU)."""
    from clpipe.runtime import runtime_for

    return runtime_for(smk)


with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.steps.evaluate import evaluate

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
