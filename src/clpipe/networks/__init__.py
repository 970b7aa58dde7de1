"""Networks from a spec: the dict every checkpoint stores (see plan.model_spec).

The spec is the config's ``model`` block with ``input`` (the experiment's input
settings: ``size``, ``channels``, ...) and ``n_outputs`` (the scenario's head) filled
in. Its ``name`` is one of the built-in networks or a user's own builder:

- ``vgg16``, ``mlp``, ``cnn``, ``resnet18``: the fixed networks of
  :mod:`clpipe.networks.plain`, their weights initialised as the spec's ``init`` says
  (``glorot``: Keras's Glorot-uniform kernels and zero biases; ``torch``: torch's own
  initialisation, kept).
- ``growing``: the task-masked growing network of docs/methods.md, section 4
  (:class:`clpipe.networks.growing.GrowingTaskNet`), called as ``model(x, task)``: a
  head per task, the task scenario only. The config gives the first task's column
  (``conv``: channels of each conv layer, ``hidden``, ``pool_after``, ``pooled_size``,
  ``kernel``, ``dropout``, ``mode``, ``init``: ``source`` = randn * 0.01 or
  ``standard``); its head has the first task's classes (``n_outputs``). The growing
  method (:mod:`clpipe.methods.growing`) adds a column per later task, and every
  checkpoint stores the grown network's own spec (:func:`spec_of`), which
  :func:`build_model` builds again (per-task widths, ``outputs``).
- ``growing_fixed``: the same architecture at a fixed width, never grown: one column
  and one output layer of ``n_outputs`` (the scenario's shared head), called as
  ``model(x)`` like every other network: the baseline (fine-tuning, EWC, ...) of the
  growing method on the same network.
- ``packnet``: never in a config; what PackNet's training makes of the network it
  trains (:class:`clpipe.networks.masked.TaskMaskedNetwork`): the base network (its
  spec under ``base``) with an owner task for each weight, called as ``model(x, task)``.
- ``module:function`` (``mypackage.mymodels:build_tiny``): a user's own model, without
  editing the package. The function (or class) is imported from the user's module (on
  ``PYTHONPATH`` or installed; :func:`clpipe.plugins.load`) and called as
  ``builder(spec)`` with the default device set to the job's (``torch.device(...)`` as
  a context), so the tensors it creates are there. ``spec`` is a copy of the whole spec:
  the config's ``model`` block as written (every key but ``name`` is the user's, passed
  as it is, no defaults added), ``input`` and ``n_outputs``. It returns an
  ``nn.Module`` called as ``model(x)``, with ``n_outputs`` logits per sample: a plain
  network (no head per task, never grown). It initialises its own weights from torch's
  global RNG, which the pipeline seeds (no ``init`` of the pipeline's is applied), so
  the same seed gives the same model. Loading a model file builds it again from the
  stored spec on the ``meta`` device and assigns the saved state dict, so everything
  it holds must be in its state dict (parameters and persistent buffers).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from clpipe import plugins
from clpipe.errors import ConfigError
from clpipe.model_settings import MODEL_SETTINGS, completed
from clpipe.networks import masked
from clpipe.networks.growing import FixedGrowingNet, GrowingTaskNet
from clpipe.networks.plain import CNN, MLP, VGG16, resnet18

# the config key a user's model is named by (a job's spec holds the model block alone)
MODEL_KEY = "model.name"

GROWING_KEYS = ("conv", "hidden", "pool_after", "pooled_size", "kernel", "dropout", "init")


def _growing_settings(spec: dict[str, Any]) -> dict[str, Any]:
    inp = spec["input"]
    settings = {k: spec[k] for k in GROWING_KEYS if k in spec}
    return {"in_channels": inp["channels"], "input_size": inp["size"], **settings}


def _glorot_init(model: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _user_model(spec: dict[str, Any], device: torch.device | str | None) -> nn.Module:
    """A user's model: ``builder(spec)`` of the ``module:function`` its name references."""
    reference = plugins.resolve(spec["name"], plugins.MODEL_ENTRY_POINTS)
    if reference is None:
        raise ConfigError(
            MODEL_KEY,
            f"unknown model {spec['name']!r} (neither built in, nor module:function, nor an "
            f"installed entry point of group {plugins.MODEL_ENTRY_POINTS!r})",
        )
    builder = plugins.load(reference, MODEL_KEY)
    if not callable(builder):
        raise ConfigError(
            MODEL_KEY,
            f"{reference!r} names an object of type {type(builder).__name__!r}, not a function "
            "or class that builds a model from its spec",
        )
    with torch.device(device or "cpu"):
        model = builder(copy.deepcopy(spec))
    if not isinstance(model, nn.Module):
        raise ConfigError(
            MODEL_KEY,
            f"{reference!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "a model builder returns the network it built",
        )
    if getattr(model, "takes_task_id", False):
        raise ConfigError(
            MODEL_KEY,
            f"{reference!r} built a model with takes_task_id: a user's model is a plain network "
            "called as model(x), with no head per task",
        )
    _check_outputs(model, spec, reference)
    return model


def _check_outputs(model: nn.Module, spec: dict[str, Any], reference: str) -> None:
    """A user's model gives one logit per output of the scenario's head: checked on a
    first forward pass of one blank input (eval mode, no gradient: no weight, running
    statistic or random number changes), before any training reads its outputs."""
    inp = spec["input"]
    param = next(model.parameters(), None)
    blank = torch.zeros(
        1, inp["channels"], inp["size"], inp["size"], device=param.device if param is not None else None
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(blank)
    except Exception as err:  # the user's forward pass on the experiment's input shape
        raise ConfigError(
            MODEL_KEY,
            f"{reference!r}: its model fails on one input of the experiment's shape {tuple(blank.shape)} "
            f"({type(err).__name__}: {err})",
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (1, spec["n_outputs"]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            MODEL_KEY,
            f"{reference!r}: its model gives {shape} for one input, not (1, {spec['n_outputs']}): one logit "
            f"per output of the scenario's head (spec['n_outputs'] = {spec['n_outputs']})",
        )


def build_model(spec: dict[str, Any], device: torch.device | str | None = None) -> nn.Module:
    """The network a spec describes, randomly initialised from torch's global RNG."""
    if spec["name"] == masked.NAME:  # a network whose weights belong to tasks (PackNet's)
        base = build_model(spec["base"], device)
        return masked.TaskMaskedNetwork(base, spec["base"], spec["columns"])
    if spec["name"] not in MODEL_SETTINGS:
        return _user_model(spec, device)  # it initialises itself
    spec = completed(spec)
    inp = spec["input"]
    name = spec["name"]
    with torch.device(device or "cpu"):
        if name == "vgg16":
            model: nn.Module = VGG16(
                in_channels=inp["channels"],
                input_size=inp["size"],
                n_outputs=spec["n_outputs"],
                width=spec["width"],
                dropout=spec["dropout"],
            )
        elif name == "mlp":
            model = MLP(
                in_features=inp["channels"] * inp["size"] ** 2,
                hidden=list(spec["hidden"]),
                n_outputs=spec["n_outputs"],
                output_relu=spec["output_relu"],
            )
        elif name == "cnn":
            model = CNN(
                in_channels=inp["channels"],
                input_size=inp["size"],
                conv=list(spec["conv"]),
                hidden=list(spec["hidden"]),
                n_outputs=spec["n_outputs"],
            )
        elif name == "resnet18":
            model = resnet18(inp["channels"], spec["n_outputs"])
        elif name == "growing":
            # a pipeline spec gives the first task's head as n_outputs; a grown network's
            # own spec (spec_of) its per-task "outputs"
            outputs = spec.get("outputs", spec.get("n_outputs"))
            model = GrowingTaskNet.from_spec({**spec, "outputs": outputs}, device=device)
        elif name == "growing_fixed":
            model = FixedGrowingNet(outputs=spec["n_outputs"], **_growing_settings(spec))
        else:
            raise ValueError(
                f"config key 'model.name': unknown model {name!r} "
                f"(known: {', '.join(MODEL_SETTINGS)}, or a user's module:function)"
            )
    own_init = name in ("growing", "growing_fixed")  # source or standard, at construction
    if not own_init and spec["init"] == "glorot" and str(device) != "meta":
        _glorot_init(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def spec_of(model: nn.Module, built_from: dict[str, Any]) -> dict[str, Any]:
    """The spec to store with ``model``'s weights, from which :func:`build_model` builds
    it again: a network that changes its own architecture (a growing network after
    growth) describes itself, keeping the pipeline's keys (the input settings); any other
    keeps the spec it was built from, a user's model always (its builder gets that spec
    again, whatever methods the model has)."""
    if isinstance(model, masked.TaskMaskedNetwork):
        return model.spec()
    describe = getattr(model, "spec", None)
    if not callable(describe) or built_from.get("name") not in MODEL_SETTINGS:
        return built_from
    own = describe()
    kept = {k: v for k, v in built_from.items() if k not in ("n_outputs", "outputs")}
    return {**kept, **own, "input": {**built_from.get("input", {}), **own["input"]}}


def evaluation_parameters(model: nn.Module, trained_task: int) -> dict[str, float]:
    """eval.csv's parameter columns of a model after ``trained_task`` (0: the random
    init): ``parameters_total`` for every model; ``parameters_added`` and
    ``parameters_in_use`` (of :func:`parameter_report`) for a growing network after a
    task, NaN otherwise (a fixed network, or nothing trained yet)."""
    total = count_parameters(model)
    if not isinstance(model, GrowingTaskNet) or trained_task < 1:
        return {"parameters_total": total, "parameters_added": math.nan, "parameters_in_use": math.nan}
    report = parameter_report(model, trained_task)
    return {k: report[k] for k in ("parameters_total", "parameters_added", "parameters_in_use")}


def parameter_report(model: nn.Module, task: int) -> dict[str, int]:
    """Parameter counts of ``model`` after training ``task`` (history.csv's columns).

    Every network: ``parameters_total``. A growing network also: ``parameters_added``
    (what the network gained for the task: the whole first column for task 1, then what
    growing for the task added), ``parameters_in_use`` (the entries that can change the
    task's outputs) and ``parameters_trainable`` (those its training could move); see
    :meth:`clpipe.networks.growing.GrowingTaskNet.parameter_counts`.
    """
    if not isinstance(model, GrowingTaskNet):
        return {"parameters_total": count_parameters(model)}
    counts = model.parameter_counts(task)
    first_column = counts.total - sum(int(g["parameters_added"]) for g in model.growth)
    return {
        "parameters_total": counts.total,
        "parameters_added": model.growth_of(task).get("parameters_added", 0)
        + (first_column if task == 1 else 0),
        "parameters_in_use": counts.in_use,
        "parameters_trainable": counts.trainable,
    }
