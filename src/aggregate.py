"""Rule aggregate: every evaluation of an experiment into metrics.csv and summary tables."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.aggregate import write_tables

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
