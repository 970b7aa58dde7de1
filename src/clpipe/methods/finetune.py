"""Fine-tuning: train each task in turn with nothing against forgetting (the baseline)."""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="finetune",
    implementation=f"{__name__}:FineTune",
    description="plain training on each task in turn (no continual-learning method)",
    role="baseline",
    palette="Greys",
    colour="#404040",
)

# --- the implementation ------------------------------------------------------------

from clpipe.methods.base import ContinualMethod


class FineTune(ContinualMethod):
    """Every hook keeps the base class's do-nothing default."""
