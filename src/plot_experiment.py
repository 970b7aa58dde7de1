"""Rule plot_experiment: forgetting, method comparison and training-curve figures."""

import os
import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.figures import draw_experiment

    draw_experiment(
        spec=smk.params.spec,
        metrics_csv=smk.input.metrics,
        summary_csv=smk.input.summary,
        training_csv=smk.input.training,
        out_dir=os.path.dirname(smk.output.forgetting),
    )
