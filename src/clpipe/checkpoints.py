"""Model files: a network's weights with the spec that rebuilds it, and its provenance."""

from __future__ import annotations

from typing import Any

import torch

from clpipe import io
from clpipe.networks import build_model


def save_model(
    path: str,
    model: torch.nn.Module,
    model_spec: dict[str, Any],
    meta: dict[str, Any],
    optimizer_state: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``optimizer_state``: the optimizer's per-parameter state by parameter name, for the
    next task to carry on with (train.optimizer_state: carry; clpipe.optim)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    extra = {} if optimizer_state is None else {"optimizer_state": optimizer_state}
    io.save(path, "model", meta, model_spec=model_spec, state_dict=state, **extra)


def carried_optimizer_state(path: str, loaded: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The optimizer state a task carries on with from the model file it starts from: none
    from the random init (a fresh optimizer), else the state its training saved."""
    if "optimizer_state" in loaded:
        return loaded["optimizer_state"]
    if loaded["meta"].get("step") == "init_model":
        return None
    raise io.FileFormatError(
        f"{path}: train.optimizer_state is carry, but this model file holds no optimizer state "
        f"(it was trained with train.optimizer_state: reset, {io.describe(loaded)}); rerun its training"
    )


def load_model(path: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint alone (the file stores its spec)."""
    obj = io.load(path, "model")
    model = build_model(obj["model_spec"], device="meta")
    try:
        model.load_state_dict(obj["state_dict"], strict=True, assign=True)
    except RuntimeError as err:
        raise io.FileFormatError(
            f"{path}: weights do not fit the model its spec describes ({io.describe(obj)}): {err}"
        ) from err
    return model.to(device), obj
