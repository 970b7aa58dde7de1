"""Optimizers from the config, and per-element step scaling for any of them.

:class:`StepScaler` turns any torch optimizer into a per-weight-learning-rate one: it
lets the optimizer take its step, then keeps only ``scale * step`` of it for every
element. Because it scales the *step* (not the gradient, which Adam would normalise
away), one Adam step with scale 0.5 moves each element exactly half as far as plain
Adam. Elements marked frozen are put back to their value before the step, bit for bit,
whatever the optimizer did (momentum, weight decay, a non-finite gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def build_optimizer(params, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    name = cfg["name"]
    lr = float(cfg["lr"])
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        kwargs: dict[str, Any] = {"lr": lr}
        if "betas" in cfg:
            kwargs["betas"] = tuple(cfg["betas"])
        if "eps" in cfg:
            kwargs["eps"] = float(cfg["eps"])
        if "weight_decay" in cfg:
            kwargs["weight_decay"] = float(cfg["weight_decay"])
        return cls(params, **kwargs)
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=float(cfg.get("momentum", 0.0)),
            weight_decay=float(cfg.get("weight_decay", 0.0)),
            nesterov=bool(cfg.get("nesterov", False)),
        )
    raise ValueError(
        f"config key 'train.optimizer.name': unknown optimizer {name!r} (known: adam, adamw, sgd)"
    )


class StepScaler:
    """Scale each element's optimizer step by a factor in [0, 1]; freeze where asked.

    ``scales`` maps parameters to tensors of their shape. ``frozen`` (optional) maps
    parameters to bool tensors; those elements never change. Parameters not in
    ``scales`` take the optimizer's full step.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scales: Mapping[nn.Parameter, torch.Tensor],
        frozen: Mapping[nn.Parameter, torch.Tensor] | None = None,
    ):
        self.params = list(scales)
        for p in self.params:
            if scales[p].shape != p.shape:
                raise ValueError(
                    f"scale of shape {tuple(scales[p].shape)} for a parameter of shape {tuple(p.shape)}"
                )
        self.scales = [scales[p].to(device=p.device, dtype=p.dtype) for p in self.params]
        frozen = frozen or {}
        self.frozen = [
            (i, frozen[p].to(device=p.device, dtype=torch.bool))
            for i, p in enumerate(self.params)
            if p in frozen and bool(frozen[p].any())
        ]
        self._before = [torch.empty_like(p) for p in self.params]
        self._handles = [
            optimizer.register_step_pre_hook(self._remember),
            optimizer.register_step_post_hook(self._rescale),
        ]

    @torch.no_grad()
    def _remember(self, optimizer, args, kwargs) -> None:
        torch._foreach_copy_(self._before, self.params)

    @torch.no_grad()
    def _rescale(self, optimizer, args, kwargs) -> None:
        # p <- before + scale * (p - before), in place, as three fused passes.
        torch._foreach_sub_(self.params, self._before)
        torch._foreach_mul_(self.params, self.scales)
        torch._foreach_add_(self.params, self._before)
        for i, mask in self.frozen:
            p = self.params[i]
            p.copy_(torch.where(mask, self._before[i], p))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
