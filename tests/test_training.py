"""The training loop: seeded and deterministic, refuses non-finite losses."""

import pytest
import torch

from clpipe.data import InputPipeline, Split, Task
from clpipe.methods.base import ContinualMethod
from clpipe.methods.finetune import FineTune
from clpipe.models import build_model
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import NonFiniteLossError, train_task

SPEC = {"name": "mlp", "hidden": [32], "input": {"size": 8, "channels": 1}, "n_outputs": 2}
TRAIN = {"epochs": 2, "batch_size": 16, "optimizer": {"name": "adam", "lr": 1e-2}}


def toy_task():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (100,), generator=g)
    x = (torch.rand(100, 1, 8, 8, generator=g) * 60 + y.view(-1, 1, 1, 1) * 190).to(torch.uint8)
    split = Split(x, y, torch.arange(100))
    return Task(1, "toy", (0, 1), split, Split(x[:20], y[:20], torch.arange(20)), split)


def run(method=None, cfg=TRAIN):
    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(7)
    model = build_model(SPEC)
    history = train_task(
        model,
        toy_task(),
        scenario=Scenario("domain", [[0, 1]]),
        pipeline=InputPipeline(SPEC["input"], torch.device("cpu")),
        train_cfg=cfg,
        method=method or FineTune({}),
        generator=g,
        eval_batch_size=64,
    )
    return model, history


def test_same_seed_same_weights_bit_for_bit():
    a, ha = run()
    b, hb = run()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ha[-1]["train_loss"] == hb[-1]["train_loss"]
    assert len(ha) == 2 and ha[-1]["val_accuracy"] > 0.9


def test_iterations_instead_of_epochs():
    _, history = run(cfg={"iterations": 9, "batch_size": 16, "optimizer": TRAIN["optimizer"]})
    assert [h["step"] for h in history] == [7, 9]  # 7 batches per epoch, then 2 more


class NaNAtStep(ContinualMethod):
    def __init__(self, at):
        super().__init__({})
        self.at, self.calls = at, 0

    def penalty(self, model):
        self.calls += 1
        return torch.tensor(float("nan")) if self.calls == self.at + 1 else None


def test_non_finite_loss_names_epoch_and_batch():
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 3 \(step 10\)"):
        run(method=NaNAtStep(10))
