"""Rule plot_setting_figure: a method's own figure (MAG's: ACC and forgetting against the
share of weights frozen), as its declaration says (clpipe.methods.traits.SettingFigure)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.figures import draw_setting_figure

    draw_setting_figure(
        spec=smk.params.spec,
        name=smk.wildcards.figure,
        metrics_csv=smk.input.metrics,
        stem=smk.output.png.removesuffix(".png"),
    )
