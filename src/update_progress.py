"""Rule update_progress: merge a task's record into the method's running state (MAG: frozen set)."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.steps.importance import update_progress

with log_to(smk.log[0]):
    update_progress(
        record=smk.input.record,
        previous=smk.input.get("previous"),
        spec=smk.params.spec,
        output=smk.output.progress,
    )
