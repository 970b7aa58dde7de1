"""Elastic weight consolidation (docs/methods.md, section 3).

After task t the importance step computes the diagonal Fisher information

    F_i = 1/N * sum_n (d log p(y_n | x_n) / d theta_i) ** 2

over N samples of the task's training split, from *per-sample* gradients computed in
batches (for linear and convolution layers exactly from their inputs and output
gradients; for any other layer with ``torch.func``), with the label ``y_n`` chosen by
``fisher_labels``: ``empirical`` (the true label), ``predicted`` (the model's argmax)
or ``sampled`` (drawn from the model's softmax, the "true" Fisher). It stores F and the
anchor theta* (the weights after the task) next to those of the earlier tasks.

Training a later task adds, for every earlier task t,
``(lambda / 2) * sum_i F_t,i (theta_i - theta*_t,i) ** 2`` to the loss; its gradient is
added to the weights' gradients after each backward pass. ``lambda`` is a
per-task setting of the arm. With ``online: true`` there is one running Fisher,
``decay * F_old + F_new``, and one anchor, the latest weights (online EWC).

The sum over tasks is folded into one quadratic per parameter,
``sum_t F_t (theta - theta*_t)^2 = A (theta - mu)^2 + c`` with ``A = sum_t F_t`` and
``mu = sum_t F_t theta*_t / A``: same gradient, one pass per step however many tasks.
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="ewc",
    implementation=f"{__name__}:ElasticWeightConsolidation",
    description=(
        "elastic weight consolidation: a Fisher-weighted quadratic penalty towards "
        "the weights after each earlier task (or one running Fisher: online EWC)"
    ),
    settings={
        "fisher_labels": {
            "enum": ["empirical", "predicted", "sampled"],
            "default": "empirical",
            "description": (
                "label of each sample's log-likelihood gradient: the true label, the model's "
                'prediction, or one sampled from its output ("true Fisher")'
            ),
        },
        "fisher_samples": {
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
            "description": "training samples the Fisher averages over (null = the whole task)",
        },
        "fisher_batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 64,
            "description": "samples per batch of per-sample gradients (memory, not the result)",
        },
        "online": {
            "type": "boolean",
            "default": False,
            "description": "one running Fisher (decayed) and one anchor instead of one per task",
        },
        "decay": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 1.0,
            "description": "online EWC; weight of the old Fisher when the new one is added",
        },
    },
    per_task_settings={
        # no default: every EWC arm says its strength
        "lambda": {
            "type": "number",
            "minimum": 0,
            "description": "strength of the penalty (lambda / 2) * sum F (theta - theta*)^2",
        },
    },
    importance=True,
    importance_settings=("fisher_labels", "fisher_samples", "fisher_batch_size", "online", "decay"),
    chained_importance=True,
    palette="Oranges",
)

# --- the implementation ------------------------------------------------------------

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from clpipe.methods.base import ContinualMethod, TaskContext, check_matches
from clpipe.scenarios import apply_mask

LABEL_MODES = ("empirical", "predicted", "sampled")


def choose_labels(
    logits: torch.Tensor, targets: torch.Tensor, mode: str, generator: torch.Generator
) -> torch.Tensor:
    """The label whose log-likelihood gradient enters the Fisher, per sample."""
    if mode == "empirical":
        return targets
    if mode == "predicted":
        return logits.argmax(dim=1)
    if mode == "sampled":
        probs = torch.softmax(logits.float(), dim=1).cpu()
        return torch.multinomial(probs, 1, generator=generator).flatten().to(targets.device)
    raise ValueError(f"fisher_labels: unknown mode {mode!r} (known: {', '.join(LABEL_MODES)})")


def squared_grads_batched(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Sum over the batch of each sample's squared gradient of -log p(label | x)."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def nll(p, xi, yi):
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(apply_mask(logits, mask), yi.unsqueeze(0))

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))(params, x, labels)
    return {k: g.pow(2).sum(dim=0) for k, g in per_sample.items()}


def _layers_for_fast_path(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Linear / Conv2d layers holding every trainable parameter, or None if some other
    module owns one (then the generic torch.func path is used)."""
    layers, covered = [], set()
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1):
            layers.append((name, module))
            covered.update(id(p) for p in own)
        else:
            return None
    if covered != {id(p) for p in model.parameters() if p.requires_grad}:
        return None
    return layers


def squared_grads_layers(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None
) -> dict[str, torch.Tensor] | None:
    """The same sums, exactly, from each layer's inputs and output gradients.

    A sample's gradient of a linear layer's weight is the outer product of its output
    gradient g and input a, so the sum of squares over the batch is (g^2)^T (a^2): no
    per-sample gradient is ever stored. For a convolution the per-sample gradient
    (g @ unfold(a)^T) is formed one layer at a time. Valid when samples do not interact
    (no batch statistics: the model is in eval mode).
    """
    layers = _layers_for_fast_path(model)
    if layers is None:
        return None
    saved: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name):
        def hook(module, inputs, output):
            saved[name] = (inputs[0].detach(), output)
            return output.clone()  # an in-place ReLU after the layer must not alter `output`

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in layers]
    try:
        logits = apply_mask(model(x), mask)
    finally:
        for h in handles:
            h.remove()
    loss = F.cross_entropy(logits, labels, reduction="sum")  # sum: each row is one sample's
    outputs = [saved[name][1] for name, _ in layers]
    grads = torch.autograd.grad(loss, outputs)
    result: dict[str, torch.Tensor] = {}
    for (name, module), g in zip(layers, grads, strict=True):
        a = saved[name][0]
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Linear):
            g2 = g.reshape(-1, g.shape[-1]).pow(2)
            result[prefix + "weight"] = g2.t() @ a.reshape(-1, a.shape[-1]).pow(2)
            if module.bias is not None:
                result[prefix + "bias"] = g2.sum(dim=0)
        else:
            cols = F.unfold(a, module.kernel_size, module.dilation, module.padding, module.stride)
            g = g.flatten(2)  # batch x out x positions
            per_sample = torch.bmm(g, cols.transpose(1, 2))  # batch x out x (in * k * k)
            result[prefix + "weight"] = per_sample.pow(2).sum(dim=0).view_as(module.weight)
            if module.bias is not None:
                result[prefix + "bias"] = g.sum(dim=2).pow(2).sum(dim=0)
    return {k: result[k] for k, p in model.named_parameters() if p.requires_grad}


def squared_grads_loop(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The same, one sample at a time with autograd (the reference for the batched one)."""
    total = {k: torch.zeros_like(p) for k, p in model.named_parameters() if p.requires_grad}
    for i in range(len(x)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(apply_mask(model(x[i : i + 1]), mask), labels[i : i + 1]).backward()
        for k, p in model.named_parameters():
            if k in total:
                total[k] += p.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    return total


def fisher_information(
    model: nn.Module,
    ctx: TaskContext,
    labels: str = "empirical",
    samples: int | None = None,
    batch_size: int = 64,
    batched: bool = True,
) -> tuple[dict[str, torch.Tensor], int]:
    """Diagonal Fisher of ``model`` on (a seeded subset of) the task's training split.

    ``batched=False`` computes it one sample at a time (the tests' reference).
    """
    split = ctx.task.train
    n_all = len(split)
    if samples is None or samples >= n_all:
        index = torch.arange(n_all)
    else:
        index = torch.randperm(n_all, generator=ctx.generator)[:samples].sort().values
    index = index.to(split.x.device)
    targets = ctx.scenario.targets(ctx.task.index, split.y)
    mask = ctx.scenario.logit_mask(ctx.task.index, split.x.device)
    if not batched:
        squared = squared_grads_loop
    else:

        def squared(m, x, y, mask):
            return squared_grads_layers(m, x, y, mask) or squared_grads_batched(m, x, y, mask)

    was_training = model.training
    model.eval()  # no dropout: the Fisher of the deterministic network
    total: dict[str, torch.Tensor] | None = None
    for start in range(0, len(index), batch_size):
        idx = index[start : start + batch_size]
        x = ctx.pipeline(split.x[idx])
        with torch.no_grad():
            logits = apply_mask(model(x), mask)
        y = choose_labels(logits, targets[idx], labels, ctx.generator)
        part = squared(model, x, y, mask)
        total = part if total is None else {k: total[k] + part[k] for k in total}
    model.train(was_training)
    n = len(index)
    return {k: (v / n).cpu() for k, v in total.items()}, n


class ElasticWeightConsolidation(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.labels = self.settings["fisher_labels"]
        if self.labels not in LABEL_MODES:
            raise ValueError(f"fisher_labels: unknown mode {self.labels!r} (known: {', '.join(LABEL_MODES)})")
        self.samples = self.settings["fisher_samples"]
        self.batch_size = int(self.settings["fisher_batch_size"])
        self.online = bool(self.settings["online"])
        self.decay = float(self.settings["decay"])
        self._strength = 0.0
        self._quadratic: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []
        self._mu: list[torch.Tensor] = []
        self._scaled_fisher: list[torch.Tensor] = []
        self._constant = 0.0

    # -- after a task ------------------------------------------------------------------
    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        fisher, n = fisher_information(model, ctx, self.labels, self.samples, self.batch_size)
        anchor = {k: p.detach().cpu().clone() for k, p in model.named_parameters() if k in fisher}
        terms = list(previous["terms"]) if previous is not None else []
        if self.online and terms:
            (old,) = terms
            fisher = {k: self.decay * old["fisher"][k] + fisher[k] for k in fisher}
            terms = []
        terms.append({"task": ctx.task.index, "samples": n, "fisher": fisher, "anchor": anchor})
        return {"terms": terms, "online": self.online, "labels": self.labels}

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        if importance is None:
            raise ValueError("ewc needs the Fisher information of the previous task(s)")
        self._strength = float(task_settings["lambda"])
        params = dict(model.named_parameters())
        total_f: dict[str, torch.Tensor] = {}
        weighted: dict[str, torch.Tensor] = {}
        constant = 0.0
        for term in importance["terms"]:
            check_matches(model, term["fisher"], f"the Fisher information of task {term['task']}")
            check_matches(model, term["anchor"], f"the anchor weights of task {term['task']}")
            for k, f in term["fisher"].items():
                f = f.double()
                a = term["anchor"][k].double()
                total_f[k] = total_f.get(k, 0) + f
                weighted[k] = weighted.get(k, 0) + f * a
                constant += float((f * a * a).sum())
        self._quadratic = []
        for k, a_sum in total_f.items():
            mu = torch.where(a_sum > 0, weighted[k] / a_sum.clamp_min(1e-300), torch.zeros_like(a_sum))
            constant -= float((a_sum * mu * mu).sum())
            p = params[k]
            self._quadratic.append((p, a_sum.to(p.device, p.dtype), mu.to(p.device, p.dtype)))
        self._constant = constant if math.isfinite(constant) else 0.0
        self._mu = [mu for _, _, mu in self._quadratic]
        self._scaled_fisher = [self._strength * f for _, f, _ in self._quadratic]

    def penalty_value(self) -> float:
        """(lambda / 2) * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2 at the current weights."""
        with torch.no_grad():
            total = sum(float((f * (p - mu).pow(2)).sum()) for p, f, mu in self._quadratic)
        return 0.5 * self._strength * (total + self._constant)

    def after_backward(self, model: nn.Module) -> None:
        # The penalty's gradient, lambda * sum_t F_t (theta - theta*_t) = lambda * A (theta - mu),
        # added straight to the gradients: no autograd graph, a few fused passes per step.
        if not self._quadratic or self._strength == 0.0:
            return
        params = [p for p, _, _ in self._quadratic]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        with torch.no_grad():
            diff = torch._foreach_sub([p.detach() for p in params], self._mu)
            torch._foreach_mul_(diff, self._scaled_fisher)
            torch._foreach_add_([p.grad for p in params], diff)
