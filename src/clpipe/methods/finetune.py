"""Fine-tuning: train each task in turn with nothing against forgetting (the baseline)."""

from __future__ import annotations

from clpipe.methods.base import ContinualMethod


class FineTune(ContinualMethod):
    """Every hook keeps the base class's do-nothing default."""
