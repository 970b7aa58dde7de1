"""The models the config can name, their settings and defaults (torch-free).

One place for them: the config's checks (clpipe.config) fill an experiment's model
settings from here, and the networks (clpipe.networks) are built from a spec completed
with :func:`completed`. The schema's ``model.name`` enum names exactly these models
(tests/unit/test_config.py).
"""

from __future__ import annotations

from typing import Any

# The growing network's first column, as in the source (docs/methods.md, section 4): 4 conv
# layers of 64 channels, a 2x2 max-pool after the first three, an adaptive average pool
# to 4 x 4, 512 hidden units, dropout 0.2, every entry randn * 0.01.
GROWING_DEFAULTS: dict[str, Any] = {
    "conv": [64, 64, 64, 64],
    "hidden": 512,
    "pool_after": [True, True, True, False],
    "pooled_size": 4,
    "kernel": 3,
    "dropout": 0.2,
    "init": "source",
}

MODEL_SETTINGS: dict[str, dict[str, Any]] = {
    # model -> its settings and their defaults (None: required)
    "vgg16": {"width": 1.0, "dropout": 0.5, "init": "glorot"},
    "mlp": {"hidden": None, "output_relu": False, "init": "glorot"},
    "cnn": {"conv": None, "hidden": None, "init": "glorot"},
    "resnet18": {"init": "torch"},
    "growing": {**GROWING_DEFAULTS, "mode": "isolated"},
    "growing_fixed": dict(GROWING_DEFAULTS),
}
# Models with a head per task, called with the task id (the task scenario only).
TASK_HEADED_MODELS = ("growing",)
# Models whose parameters change from task to task (a column and a head per task).
GROWING_MODELS = ("growing",)
MODEL_INITS = {"growing": ("source", "standard"), "growing_fixed": ("source", "standard")}
PLAIN_INITS = ("glorot", "torch")


def completed(spec: dict[str, Any]) -> dict[str, Any]:
    """A model spec with the defaults of its model's settings filled in (a spec saved
    before a setting existed builds as it did then: with its default). A user's model
    (``module:function``) has no settings here: its spec is left as it is."""
    defaults = {k: v for k, v in MODEL_SETTINGS.get(spec["name"], {}).items() if v is not None}
    return {**defaults, **spec}
