"""Rule plot_experiment: forgetting, method comparison and training-curve figures."""

import os
import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.figures import draw_experiment
from clpipe.logs import log_to

with log_to(smk.log[0]):
    draw_experiment(
        spec=smk.params.spec,
        metrics_csv=smk.input.metrics,
        summary_csv=smk.input.summary,
        training_csv=smk.input.training,
        out_dir=os.path.dirname(smk.output.forgetting),
    )
