"""Which copy of clpipe the workflow's jobs import."""

from __future__ import annotations

import os


def prefer_this_checkout(src: str) -> None:
    """Put ``src`` first on PYTHONPATH, which the rule scripts inherit.

    Snakemake appends a script's folder to ``sys.path``, behind site-packages, so an
    installed clpipe (say an editable install of another checkout) would shadow this
    one. PYTHONPATH entries come before site-packages.
    """
    entries = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join(entries)
