"""Rule plot_freeze: ACC and forgetting against the share of weights frozen (MAG)."""

from clpipe.figures import draw_freeze
from clpipe.logs import log_to

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts

with log_to(smk.log[0]):
    draw_freeze(
        spec=smk.params.spec,
        metrics_csv=smk.input.metrics,
        stem=smk.output.png.removesuffix(".png"),
    )
