"""Rule compute_importance: what a method keeps from a trained task (MAG: freezing values)."""

from clpipe.logs import log_to
from clpipe.runtime import runtime_for
from clpipe.steps.consolidate import compute_importance

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts

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
