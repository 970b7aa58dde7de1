"""Model files: a network's weights with the spec that rebuilds it, and its provenance."""

from __future__ import annotations

from typing import Any

import torch

from clpipe import io
from clpipe.models import build_model


def save_model(path: str, model: torch.nn.Module, model_spec: dict[str, Any], meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    io.save(path, "model", meta, model_spec=model_spec, state_dict=state)


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
