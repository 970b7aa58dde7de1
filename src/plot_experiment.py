"""Rule plot_experiment: forgetting, method comparison and training-curve figures."""

import os

from clpipe.figures import draw_experiment
from clpipe.logs import log_to

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts

with log_to(smk.log[0]):
    draw_experiment(
        spec=smk.params.spec,
        metrics_csv=smk.input.metrics,
        summary_csv=smk.input.summary,
        training_csv=smk.input.training,
        out_dir=os.path.dirname(smk.output.forgetting),
    )
