"""Rule plot_accuracy_matrix: one arm's accuracy matrix as an annotated heatmap."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.figures import draw_accuracy_matrix

    draw_accuracy_matrix(
        matrix_csv=smk.input.matrix,
        arm=smk.wildcards.arm,
        stem=smk.output.png.removesuffix(".png"),
    )
