"""Rule plot_setting_figure: a method's own figure (MAG's: ACC and forgetting against the
share of weights frozen), as its declaration says (clpipe.methods.traits.SettingFigure)."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.figures import draw_setting_figure
from clpipe.logs import log_to

with log_to(smk.log[0]):
    draw_setting_figure(
        spec=smk.params.spec,
        name=smk.wildcards.figure,
        metrics_csv=smk.input.metrics,
        stem=smk.output.png.removesuffix(".png"),
    )
