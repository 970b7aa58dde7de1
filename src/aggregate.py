"""Rule aggregate: every evaluation of an experiment into metrics.csv and summary tables."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.aggregate import write_tables
from clpipe.logs import log_to

with log_to(smk.log[0]):
    write_tables(
        evaluations=list(smk.input.evaluations),
        histories=list(smk.input.histories),
        spec=smk.params.spec,
        metrics_out=smk.output.metrics,
        summary_out=smk.output.summary,
        matrix_out=smk.output.matrix,
        training_out=smk.output.training,
        markdown_out=smk.output.markdown,
        summary_html_out=smk.output.summary_html,
        matrix_html_out=smk.output.matrix_html,
        live=bool((smk.config.get("logging") or {}).get("tensorboard", False)),
    )
