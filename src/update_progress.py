"""Rule update_progress: merge a task's record into the method's running state (MAG: frozen set)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.steps.importance import update_progress

    update_progress(
        record=smk.input.record,
        previous=smk.input.get("previous"),
        spec=smk.params.spec,
        output=smk.output.progress,
    )
