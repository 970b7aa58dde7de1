"""Rule compute_importance: what a method keeps from a trained task (MAG: freezing values)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.runtime import runtime_for
    from clpipe.steps.importance import compute_importance

    compute_importance(
        model_in=smk.input.model,
        data=smk.input.data,
        progress=smk.input.get("progress"),
        previous=smk.input.get("previous"),
        spec=smk.params.spec,
        output=smk.output.importance,
        runtime=runtime_for(smk),
    )
