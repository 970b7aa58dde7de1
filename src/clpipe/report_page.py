"""The first page of Snakemake's HTML report: every experiment's results (torch-free).

``snakemake --report`` opens on the workflow's description (the Snakefile's
``report:``) when the report has metadata (``--report-metadata``, which the workflow
gives its report: workflow/rules/common.smk), else on the rule graph. This module
writes that description for the experiments a run made: per experiment its
description, its summary tables (``summary.html``'s body) and its two main figures
inline, and a link to the rest of its figures and tables in the report's own menus.
Snakemake renders it as reStructuredText; the tables and figures are raw HTML blocks
(figures as data URIs: the report stays one self-contained file).
"""

from __future__ import annotations

import base64
import html
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

from clpipe.errors import InputError
from clpipe.layout import Layout

# the figures shown on the first page, each experiment's (the rest are a click away)
FRONT_FIGURES = ("methods", "comparisons")


def missing_results(layout: Layout, experiments: Iterable[str]) -> list[str]:
    """The experiments with no tables yet (their aggregation has not run)."""
    return [e for e in experiments if not Path(layout.aggregate_outputs(e)["summary_html"]).is_file()]


def refusal(missing: list[str], finished: list[str], configfiles: list[str]) -> str:
    """Why the report is not built, and the command that builds it for what has results."""
    config = " ".join(f"--configfile {_relative(c)}" for c in configfiles)
    text = (
        f"no results yet for {', '.join(missing)}: the report shows every experiment the "
        "config runs (its run list, or all of its experiments). Run them first"
    )
    if finished:
        run = ",".join(finished)
        text += f", or build the report of those that have results: snakemake --report report.html {config}"
        text += f" --config 'run=[{run}]'"
    return text.replace("  ", " ")


def out_of_date(jobs: Iterable) -> dict[str, int]:
    """{rule: jobs} of the Snakemake jobs a run would still run (the target aside)."""
    counts: dict[str, int] = {}
    for job in jobs:
        if job.rule.name != "all":
            counts[job.rule.name] = counts.get(job.rule.name, 0) + 1
    return counts


def stale_refusal(stale: dict[str, int], configfiles: list[str]) -> str:
    """Why the report is not built while results are out of date, and what to run."""
    jobs = ", ".join(f"{rule} x{n}" for rule, n in sorted(stale.items()))
    config = " ".join(f"--configfile {_relative(c)}" for c in configfiles)
    return (
        f"cannot build the report: the results are not up to date with the config and code "
        f"({sum(stale.values())} job(s) would run: {jobs}); a report of them would show tables that "
        f"a run would change. Run the workflow first (snakemake --cores N {config} with the same "
        "--config), or see what it would rerun and why with -n"
    )


def _relative(path: str) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    p = Path(path)
    return str(p.relative_to(Path.cwd())) if p.is_absolute() and p.is_relative_to(Path.cwd()) else str(p)


def _body(summary_html: str) -> str:
    """The tables and notes of a summary.html page, without its page title."""
    found = re.search(r"<body>(.*)</body>", summary_html, re.S)
    body = found.group(1) if found else summary_html
    return re.sub(r"^\s*<h2>.*?</h2>", "", body, count=1, flags=re.S)


def _raw(html_text: str) -> str:
    return ".. raw:: html\n\n" + textwrap.indent(html_text.strip(), "   ") + "\n"


def _figure(path: Path) -> str:
    # base64 in lines of 76 (browsers skip the line breaks: forgiving-base64), since
    # docutils refuses a source line over 10,000 characters
    data = base64.encodebytes(path.read_bytes()).decode().strip()
    size = "width:100%;max-width:60rem"
    return f'<img src="data:image/png;base64,{data}" style="{size}" alt="{html.escape(path.stem)}">'


def overview(layout: Layout, experiments: dict[str, str], title: str) -> str:
    """The report's first page for ``experiments`` (name -> its config description): one
    raw HTML block (reStructuredText's own headings would be promoted to a document
    title and subtitle by docutils when there is one experiment)."""
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<p>Every experiment's summary tables and main figures; the rest (every figure, the "
        "accuracy matrices, the tables as CSV) are under <b>Results</b> in the menu, or a click "
        "away from each experiment below.</p>",
    ]
    for name, description in experiments.items():
        summary = Path(layout.aggregate_outputs(name)["summary_html"])
        if not summary.is_file():
            raise InputError(f"{summary}: missing; the report needs every experiment's tables")
        show = f"javascript:app.showCategory('{html.escape(name)}')"
        parts += [f"<h2>{html.escape(name)}</h2>", f"<p>{html.escape(' '.join(description.split()))}</p>"]
        parts.append(f'<p><a href="{show}">All results of {html.escape(name)}</a></p>')
        parts.append(_body(summary.read_text()))
        figures = [Path(layout.experiment_file(name, f"figures/{f}.png")) for f in FRONT_FIGURES]
        parts += [_figure(f) for f in figures if f.is_file()]
    return _raw("\n".join(parts))
