"""Rule evaluate: test accuracy and loss of one model on every task."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.logs import log_to
from clpipe.runtime import runtime_for
from clpipe.steps.evaluate import evaluate

with log_to(smk.log[0]):
    evaluate(
        model_in=smk.input.model,
        data=smk.input.data,
        spec=smk.params.spec,
        output=smk.output.evaluation,
        runtime=runtime_for(smk),
    )
