"""Rule train_next_task: train a later task of an arm with its method."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.evaluate import cache_path
from clpipe.steps.job import job

# the job also leaves its own evaluation of the model for the evaluate rule (eval.cache.json)
with job(snakemake, also=[cache_path(snakemake.output.model)]) as smk:  # noqa: F821 -- pins the CPU, then torch
    from clpipe.runtime import runtime_for
    from clpipe.steps.train import train_next_task

    train_next_task(
        model_in=smk.input.model,
        data=smk.input.data,
        importance=smk.input.get("importance"),
        spec=smk.params.spec,
        model_out=smk.output.model,
        history_out=smk.output.history,
        record_out=smk.output.record,
        runtime=runtime_for(smk),
        scripts_dir=smk.scriptdir,  # it also evaluates its model, for the evaluate rule
    )
