"""Optimizers from the config, and per-element step scaling for any of them.

:class:`StepScaler` turns any torch optimizer into a per-weight-learning-rate one: it
lets the optimizer take its step, then keeps only ``scale * step`` of it for every
element. Because it scales the *step* (not the gradient, which Adam would normalise
away), one Adam step with scale 0.5 moves each element exactly half as far as plain
Adam. Elements marked frozen are put back to their value before the step, bit for bit,
whatever the optimizer did (momentum, weight decay, a non-finite gradient; the one
exception, a frozen -0.0, is in the class's docstring).
"""

from __future__ import annotations

import math
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


class CarriedOptimizerState:
    """The optimizer's per-parameter state carried from one task to the next
    (``train.optimizer_state: carry``): Adam's moments and step counts, SGD's momentum.

    Only the state moves, keyed by parameter name: the optimizer itself (its
    param_groups: learning rate, betas, weight decay) is built from the config for every
    task as always, and the task's schedule starts afresh. Restored into the task's new
    optimizer before its first step, the state makes the tasks' optimizers one optimizer
    over the whole sequence, bit for bit (tests/unit/test_training.py). ``by_name`` is what
    :meth:`keep` left, read from the model file the task starts from (None: a fresh
    optimizer, e.g. from the random init).
    """

    def __init__(self, by_name: dict[str, dict[str, Any]] | None = None, source: str = ""):
        self.by_name = by_name
        self.source = source  # the file it came from, for errors

    def restore(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        if not self.by_name:
            return
        names = {id(p): n for n, p in model.named_parameters()}
        trained = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        index = {name: i for i, name in enumerate(trained)}
        params = dict(model.named_parameters())
        for name, state in self.by_name.items():
            if name not in index:
                raise ValueError(
                    f"{self.source}: it carries optimizer state for parameter {name!r}, which this "
                    "task's optimizer does not train; train.optimizer_state: carry needs the same "
                    "trained parameters in every task"
                )
            for key, value in state.items():
                if torch.is_tensor(value) and value.ndim and value.shape != params[name].shape:
                    raise ValueError(
                        f"{self.source}: its optimizer state {key!r} of parameter {name!r} has shape "
                        f"{tuple(value.shape)}, the parameter {tuple(params[name].shape)}"
                    )
        current = optimizer.state_dict()
        # torch's own loading: it puts every tensor on its parameter's device and dtype
        optimizer.load_state_dict(
            {"state": {index[n]: s for n, s in self.by_name.items()}, "param_groups": current["param_groups"]}
        )

    def keep(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        names = {id(p): n for n, p in model.named_parameters()}
        self.by_name = {
            names[id(p)]: {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in state.items()}
            for p, state in optimizer.state.items()
        }


class StepScaler:
    """Scale each element's optimizer step by a factor in [0, 1]; freeze where asked.

    ``scales`` maps parameters to tensors of their shape. ``frozen`` (optional) maps
    parameters to bool tensors; those elements never change. Parameters not in
    ``scales`` take the optimizer's full step.

    Cost per step: one copy of the managed parameters before the optimizer's step and
    one fused ``lerp`` pass after it, ``p <- p + (1 - scale) * (before - p)``, with the
    weights ``1 - scale`` computed once here and frozen elements folded in as weight
    1, which gives ``before`` exactly for any finite value. A frozen element can only
    come out different when a value is not finite (an inf or NaN from the optimizer),
    so on a CPU a cheap finiteness check decides whether an exact masked restore is
    needed; on other devices the masked restore always runs, to avoid a host sync per
    step. (The one value a finite lerp does not round-trip is a frozen -0.0 that the
    optimizer pushed positive: it comes back as +0.0. No initialiser or optimizer here
    produces -0.0 from a nonzero weight.)
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
        frozen = frozen or {}
        masks = {
            i: frozen[p].to(device=p.device, dtype=torch.bool)
            for i, p in enumerate(self.params)
            if p in frozen and bool(frozen[p].any())
        }
        # lerp weights: 1 - scale, and exactly 1 ("back to before") where frozen
        self.weights = []
        for i, p in enumerate(self.params):
            w = 1.0 - scales[p].to(device=p.device, dtype=p.dtype)
            self.weights.append(w.masked_fill_(masks[i], 1.0) if i in masks else w)
        self.frozen = list(masks.items())
        self._frozen_params = [self.params[i] for i, _ in self.frozen]
        # a host sync is free on a CPU: check, and restore only when something is not finite
        self._check_finite = all(p.device.type == "cpu" for p in self._frozen_params)
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
        # p <- p + (1 - scale) * (before - p), in place, one fused pass; frozen: weight 1
        torch._foreach_lerp_(self.params, self._before, self.weights)
        if not self.frozen:
            return
        if self._check_finite:
            # a sum is finite only if every element is (an overflow merely restores needlessly)
            if math.isfinite(sum(float(p.sum()) for p in self._frozen_params)):
                return  # every frozen element is already its value before, bit for bit
        for i, mask in self.frozen:
            p = self.params[i]
            torch.where(mask, self._before[i], p, out=p)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
