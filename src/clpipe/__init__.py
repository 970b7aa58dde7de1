"""clpipe: continual-learning experiments as a reproducible Snakemake pipeline.

The package holds the logic; the workflow (``workflow/``) and the thin scripts in
``src/*.py`` only wire it together. Modules that the workflow imports while it builds
its DAG (``config``, ``plan``, ``catalog``, ``methods``) do not import torch, so
Snakemake itself can run from a light environment with ``--use-conda``.
"""

# The release, in one place (pyproject.toml reads it); every result's provenance records
# it. Tag a release vX.Y.Z in git; a workflow that uses this one as a module pins it by
# checking out that tag (docs/reproducibility.md, "Using the workflow as a module").
__version__ = "0.2.0"
