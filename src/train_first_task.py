"""Rule train_first_task: train task 1 from the random init (shared by every arm)."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.runtime import runtime_for
from clpipe.steps.train import train_first_task

with log_to(smk.log[0]):
    train_first_task(
        model_in=smk.input.model,
        data=smk.input.data,
        spec=smk.params.spec,
        model_out=smk.output.model,
        history_out=smk.output.history,
        runtime=runtime_for(smk),
        scripts_dir=smk.scriptdir,  # it also evaluates its model, for the evaluate rule
    )
