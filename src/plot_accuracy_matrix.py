"""Rule plot_accuracy_matrix: one arm's accuracy matrix as an annotated heatmap."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.figures import draw_accuracy_matrix
from clpipe.logs import log_to

with log_to(smk.log[0]):
    draw_accuracy_matrix(
        matrix_csv=smk.input.matrix,
        arm=smk.wildcards.arm,
        stem=smk.output.png.removesuffix(".png"),
    )
