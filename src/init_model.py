"""Rule init_model: the seeded random initialisation every arm starts from."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.runtime import runtime_for
    from clpipe.steps.init import init_model

    init_model(
        spec=smk.params.spec,
        output=smk.output.model,
        runtime=runtime_for(smk),
    )
