"""The headline method: freezing values, step scaling and cumulative freezing."""

import math

import pytest
import torch
from torch import nn

from clpipe.methods.mag import (
    MagnitudePlasticity,
    freezing_values,
    managed_parameters,
    select_to_freeze,
)
from clpipe.optim import StepScaler, build_optimizer


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 2)
    )


def batches(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 2, (16,), generator=g)) for _ in range(n)
    ]


def train_steps(model, optimizer, data):
    for x, y in data:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_freezing_values_formula():
    w = torch.tensor([[-2.0, 1.0], [0.5, 0.0]])
    fv = freezing_values(w, gamma=1.0)
    torch.testing.assert_close(fv, torch.tensor([[0.0, 0.5], [0.75, 1.0]]))
    fv2 = freezing_values(w, gamma=2.0)
    torch.testing.assert_close(fv2, torch.tensor([[0.0, 0.75], [1 - 0.0625, 1.0]]))
    # an all-zero tensor has no important weight: everything stays fully plastic
    assert torch.equal(freezing_values(torch.zeros(3), 1.0), torch.ones(3))


def test_select_to_freeze_takes_the_largest_trainable_weights():
    w = torch.tensor([0.1, -0.9, 0.5, 0.3, -0.7, 0.2, 0.05, 0.6, -0.4, 0.8])
    fv = freezing_values(w, 1.0)
    new = select_to_freeze(fv, torch.zeros(10, dtype=torch.bool), 30.0)
    assert new.nonzero().flatten().tolist() == [1, 4, 9]  # |w| = .9, .7, .8
    # already frozen elements are not counted and not chosen again
    frozen = new.clone()
    more = select_to_freeze(fv, frozen, 50.0)  # 50% of the 7 trainable -> round(3.5) = 4
    assert int(more.sum()) == 4
    assert not bool((more & frozen).any())
    assert more.nonzero().flatten().tolist() == [2, 3, 7, 8]  # .5, .3, .6, .4


@pytest.mark.parametrize(
    "opt_cfg",
    [
        {"name": "adam", "lr": 1e-2, "weight_decay": 0.1},
        {"name": "adamw", "lr": 1e-2, "weight_decay": 0.1},
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True},
    ],
)
def test_frozen_elements_are_bit_identical_after_training(opt_cfg):
    """(a) whatever the optimizer (momentum, weight decay), frozen elements never move."""
    model = small_net()
    method = MagnitudePlasticity({"gamma": 1.0, "scale_biases": True})
    importance = method.compute_importance(model, None, None, None)
    method.begin_task(model, importance, {"freeze": 50.0}, None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model.parameters(), opt_cfg)
    method.attach(opt, model)
    train_steps(model, opt, batches())
    record = method.end_task(model)
    moved_any = False
    for name, p in model.named_parameters():
        frozen = record["new_frozen"][name]
        assert frozen.any()
        assert torch.equal(p.detach()[frozen], before[name][frozen]), name
        moved_any |= bool((p.detach()[~frozen] != before[name][~frozen]).any())
    assert moved_any, "training must still move the trainable elements"


def test_half_freezing_value_moves_exactly_half_as_far_as_adam():
    """(b) the FV scales Adam's step (not the gradient, which Adam would normalise away)."""
    model = small_net()
    reference = small_net()
    reference.load_state_dict(model.state_dict())
    cfg = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-7}
    opt = build_optimizer(model.parameters(), cfg)
    ref_opt = build_optimizer(reference.parameters(), cfg)
    # bring both optimizers into the same non-trivial state first
    data = batches(4)
    train_steps(model, opt, data[:3])
    train_steps(reference, ref_opt, data[:3])
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    StepScaler(opt, {p: torch.full_like(p, 0.5) for p in model.parameters()})
    train_steps(model, opt, data[3:])
    train_steps(reference, ref_opt, data[3:])
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        ours = p.detach() - start[name]
        adam = q.detach() - start[name]
        assert adam.abs().max() > 0
        # exact up to the rounding of adding a step to a weight (a few ulp of the weight)
        tol = 4 * torch.finfo(torch.float32).eps * start[name].abs().max().item()
        torch.testing.assert_close(ours, 0.5 * adam, rtol=0, atol=tol)


def run_task(model, method, importance, percent, data, progress=None):
    method.begin_task(model, importance, {"freeze": percent}, None)
    opt = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    method.attach(opt, model)
    train_steps(model, opt, data)
    record = method.end_task(model)
    progress = method.update_progress(progress, record)
    return progress, method.compute_importance(model, None, None, progress)


@pytest.mark.parametrize("p,q", [(20, 10), (20, 50), (50, 80), (10, 20), (80, 50)])
def test_cumulative_frozen_fraction(p, q):
    """(c) after B at p and C at q: frozen fraction 1-(1-p)(1-q), within one element."""
    model = small_net()
    method = MagnitudePlasticity({"gamma": 1.0, "scale_biases": False})
    fv_a = method.compute_importance(model, None, None, None)
    progress_b, fv_b = run_task(model, method, fv_a, p, batches(3, seed=2))
    progress_c, _ = run_task(model, method, fv_b, q, batches(3, seed=3), progress_b)
    expected = 1 - (1 - p / 100) * (1 - q / 100)
    managed = managed_parameters(model, scale_biases=False)
    assert set(progress_c["frozen"]) == set(managed)
    for name, mask in progress_c["frozen"].items():
        n = mask.numel()
        assert abs(int(mask.sum()) - expected * n) <= 1, (name, int(mask.sum()), expected * n)
        assert bool((mask | ~progress_b["frozen"][name]).all()), "the frozen set only grows"


def test_frozen_element_keeps_zero_freezing_value_when_it_becomes_smallest():
    """(d) once frozen, FV = 0 forever, even if its magnitude is now the smallest."""
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    method = MagnitudePlasticity({"gamma": 1.0})
    fv_a = method.compute_importance(model, None, None, None)
    method.begin_task(model, fv_a, {"freeze": 25.0}, None)
    progress = method.update_progress(None, method.end_task(model))
    assert progress["frozen"]["weight"].tolist() == [[True, False, False, False]]
    # task B made the frozen weight the smallest one
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.01, 3.0, 2.0, 1.0]]))
    fv_b = method.compute_importance(model, None, None, progress)
    assert fv_b["fv"]["weight"][0, 0] == 0.0
    assert fv_b["fv"]["weight"][0, 1] == 0.0  # the new largest weight: |w| = max
    assert fv_b["fv"]["weight"][0, 3] == pytest.approx(1 - 1 / 3)
    # and at task C it stays frozen while q% of the others are chosen by FV
    method.begin_task(model, fv_b, {"freeze": 34.0}, None)  # round(0.34 * 3) = 1 more
    record = method.end_task(model)
    assert record["new_frozen"]["weight"].tolist() == [[False, True, False, False]]
    progress = method.update_progress(progress, record)
    assert progress["frozen"]["weight"].tolist() == [[True, True, False, False]]


def test_biases_are_untouched_unless_scale_biases():
    model = small_net()
    kernels_only = managed_parameters(model, scale_biases=False)
    assert all(p.ndim >= 2 for p in kernels_only.values())
    assert set(managed_parameters(model, scale_biases=True)) == {n for n, _ in model.named_parameters()}
    method = MagnitudePlasticity({"gamma": 1.0, "scale_biases": False})
    imp = method.compute_importance(model, None, None, None)
    method.begin_task(model, imp, {"freeze": 80.0}, None)
    biases = {n: p.detach().clone() for n, p in model.named_parameters() if p.ndim == 1}
    opt = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    method.attach(opt, model)
    train_steps(model, opt, batches(2))
    for n, p in model.named_parameters():
        if p.ndim == 1:
            assert not torch.equal(p.detach(), biases[n]), "biases take Adam's full step"


def test_freezing_values_from_another_model_are_refused():
    method = MagnitudePlasticity({})
    imp = method.compute_importance(small_net(), None, None, None)
    other = nn.Sequential(
        nn.Conv2d(1, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 2)
    )
    with pytest.raises(ValueError, match=r"0.weight: shape \(4, 1, 3, 3\) but the model has \(5, 1, 3, 3\)"):
        method.begin_task(other, imp, {"freeze": 10.0}, None)


def test_zero_percent_freezes_nothing_but_scales():
    model = small_net()
    method = MagnitudePlasticity({})
    imp = method.compute_importance(model, None, None, None)
    method.begin_task(model, imp, {"freeze": 0.0}, None)
    rec = method.end_task(model)
    assert not any(bool(m.any()) for m in rec["new_frozen"].values())
    assert math.isclose(rec["percent"], 0.0)


@pytest.mark.parametrize("check_finite", [True, False])
def test_frozen_elements_survive_a_non_finite_step_bit_for_bit(check_finite):
    """Frozen elements come back exactly even when the optimizer's step is inf or NaN."""
    model = small_net()
    params = [p for p in model.parameters() if p.ndim >= 2]
    g = torch.Generator().manual_seed(3)
    frozen = {p: torch.rand(p.shape, generator=g) < 0.3 for p in params}
    scales = {p: torch.rand(p.shape, generator=g).masked_fill(frozen[p], 0.0) for p in params}
    opt = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    scaler = StepScaler(opt, scales, frozen)
    scaler._check_finite = check_finite  # the CPU path (check, then restore) and the other one
    train_steps(model, opt, batches(2))  # a non-trivial optimizer state first
    before = [p.detach().clone() for p in params]
    opt.zero_grad()
    nn.functional.cross_entropy(model(batches(1)[0][0]), batches(1)[0][1]).backward()
    for p in params:
        p.grad.view(-1)[::3] = float("nan")
        p.grad.view(-1)[1::3] = float("inf")
    opt.step()
    for p, b in zip(params, before, strict=True):
        f = frozen[p]
        assert torch.equal(p.detach()[f].view(torch.int32), b[f].view(torch.int32))
        assert not bool(p.detach()[~f].isfinite().all()), "the trainable elements did take the bad step"


def test_scale_one_keeps_the_optimizers_step_bit_for_bit():
    model, reference = small_net(), small_net()
    opt = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    ref_opt = build_optimizer(reference.parameters(), {"name": "adam", "lr": 1e-2})
    StepScaler(opt, {p: torch.ones_like(p) for p in model.parameters()})
    train_steps(model, opt, batches(4))
    train_steps(reference, ref_opt, batches(4))
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p.detach().view(torch.int32), q.detach().view(torch.int32))
