"""clpipe: continual-learning experiments as a reproducible Snakemake pipeline.

The package holds the logic; the workflow (``workflow/``) and the thin scripts in
``src/*.py`` only wire it together. Modules that the workflow imports while it builds
its DAG (``config``, ``plan``, ``catalog``, ``methods``) do not import torch, so
Snakemake itself can run from a light environment with ``--use-conda``.
"""

__version__ = "0.1.0"
