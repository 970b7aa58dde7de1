"""Step init_model: the seeded random initialisation every arm starts from."""

from __future__ import annotations

import logging
from typing import Any

from clpipe.checkpoints import save_model
from clpipe.networks import build_model, count_parameters
from clpipe.provenance import provenance
from clpipe.runtime import Runtime, derive_seed, seed_everything

log = logging.getLogger("clpipe")


def init_model(spec: dict[str, Any], output: str, runtime: Runtime) -> None:
    """The randomly initialised model every arm starts from (row 0 of R)."""
    seed_everything(derive_seed(spec["seed"], "init"))
    model = build_model(spec["model"])  # on the CPU: the same init on every device
    log.info("%s: %d parameters", spec["model"]["name"], count_parameters(model))
    save_model(output, model, spec["model"], provenance("init_model", spec, runtime))
