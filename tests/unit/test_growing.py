"""The task-masked growing network (docs/methods.md, section 4): isolation, growth, protection, sizes."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from clpipe.methods.growing import decide_growth
from clpipe.networks.growing import GrowingTaskNet, dense_parameter_count
from clpipe.networks.task_units import TaskMaskedConv2d, TaskMaskedLinear
from clpipe.optim import build_optimizer
from helpers.growing_schedule import (
    SOURCE_SCHEDULE,
    schedule_totals,
    source_network,
    source_schedule_parameters,
)

MODES = ["isolated", "read"]
OPTIMIZERS = [
    {"name": "adam", "lr": 1e-2, "weight_decay": 0.1},
    {"name": "adamw", "lr": 1e-2, "weight_decay": 0.1},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True},
]
SIZE = 16


def small_net(mode, init="standard", seed=0):
    """4 conv layers of 4 channels, 8 hidden, 3 outputs per task; 16 px, pooled to 2 x 2."""
    torch.manual_seed(seed)
    return GrowingTaskNet(
        in_channels=3,
        input_size=SIZE,
        conv=[4, 4, 4, 4],
        hidden=8,
        outputs=3,
        pooled_size=2,
        mode=mode,
        init=init,
    )


def grow_small(model, task, init="standard"):
    return model.grow(task, conv=4, hidden=8, outputs=3, init=init)


def three_task_net(mode):
    """small_net grown twice, the second time by a different count per conv layer."""
    model = small_net(mode)
    grow_small(model, 2)
    model.grow(3, conv=[2, 3, 4, 5], hidden=6, outputs=7)
    return model


def fixed_batch(n=6, seed=123):
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def task_outputs(model, x):
    was_training = model.training
    model.eval()
    out = {t: model(x, t).clone() for t in range(1, model.n_tasks + 1)}
    model.train(was_training)
    return out


def train_task(model, task, opt_cfg, steps=3, protect=True):
    """A few steps on random data of ``task``; optimizer new per task, as in the pipeline."""
    model.train()
    optimizer = build_optimizer(model.parameters(), opt_cfg)
    scaler = model.protect(optimizer, task) if protect else None
    g = torch.Generator().manual_seed(100 + task)
    for _ in range(steps):
        x = torch.randn(8, 3, SIZE, SIZE, generator=g)
        y = torch.randint(0, model.outputs_per_task[task - 1], (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x, task), y).backward()
        optimizer.step()
    if scaler is not None:
        scaler.remove()


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def perturbed(model, masks, amount=0.5):
    """A copy of ``model`` with ``amount`` added to the entries ``masks`` marks."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in other.named_parameters():
            p.add_(amount * masks[name].to(p.dtype))
    return other


# --- (a) training a task never moves an earlier task ------------------------------------


@pytest.mark.parametrize("opt_cfg", OPTIMIZERS, ids=lambda c: c["name"])
@pytest.mark.parametrize("mode", MODES)
def test_training_later_tasks_leaves_earlier_outputs_bit_identical(mode, opt_cfg):
    model = small_net(mode)
    x = fixed_batch()
    train_task(model, 1, opt_cfg)
    for task in (2, 3):
        grow_small(model, task)
        before, params = task_outputs(model, x), snapshot(model)
        frozen = {name: ~m for name, m in model.trainable_masks(task).items()}
        train_task(model, task, opt_cfg)
        after = task_outputs(model, x)
        for old in range(1, task):
            assert torch.equal(after[old], before[old]), f"task {old} changed while training task {task}"
        assert not torch.equal(after[task], before[task])  # the new task did learn
        for name, p in model.named_parameters():
            assert torch.equal(p.detach()[frozen[name]], params[name][frozen[name]]), name
        moved = sum(int((p.detach() != params[n])[~frozen[n]].sum()) for n, p in model.named_parameters())
        assert moved > 0


@pytest.mark.parametrize("mode", MODES)
def test_other_tasks_weights_get_no_gradient(mode):
    model = small_net(mode)
    grow_small(model, 2)
    grow_small(model, 3)
    F.cross_entropy(model(fixed_batch(), 2), torch.zeros(6, dtype=torch.int64)).backward()
    trainable = model.trainable_masks(2)
    for name, p in model.named_parameters():
        assert bool((p.grad[~trainable[name]] == 0).all()), name
        assert bool((p.grad[trainable[name]] != 0).any()), name


def test_without_protection_weight_decay_moves_earlier_tasks():
    """The check above can fail: gradients alone are zero, but weight decay still moves
    old units unless StepScaler freezes them."""
    model = small_net("read")
    x = fixed_batch()
    grow_small(model, 2)
    before = task_outputs(model, x)
    train_task(model, 2, OPTIMIZERS[1], protect=False)
    assert not torch.equal(task_outputs(model, x)[1], before[1])


# --- (b) growing leaves earlier tasks bit-identical --------------------------------------


@pytest.mark.parametrize("init", ["source", "standard"])
@pytest.mark.parametrize("mode", MODES)
def test_grow_keeps_old_weights_and_outputs_bit_identical(mode, init):
    model = small_net(mode, init=init)
    x = fixed_batch()
    train_task(model, 1, OPTIMIZERS[0])
    for task in (2, 3):
        before, params = task_outputs(model, x), snapshot(model)
        added = grow_small(model, task, init=init)
        after = task_outputs(model, x)
        assert set(after) == set(range(1, task + 1))
        for old in range(1, task):
            assert torch.equal(after[old], before[old])
        for name, p in model.named_parameters():
            old_block = p.detach()[tuple(slice(0, n) for n in params[name].shape)]
            assert torch.equal(old_block, params[name]), name
        assert added == sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in params.values())
    assert model.convs[1].unit_task.tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert model.convs[0].input_task.tolist() == [0, 0, 0]
    assert model.fc.input_task.tolist() == [1] * 16 + [2] * 16 + [3] * 16  # 4 channels x 2 x 2 each
    assert model.head.unit_task.tolist() == [1] * 3 + [2] * 3 + [3] * 3


@pytest.mark.parametrize("mode", MODES)
def test_widening_the_newest_task_keeps_earlier_ones(mode):
    model = small_net(mode)
    grow_small(model, 2)
    x = fixed_batch()
    before = task_outputs(model, x)
    model.grow(2, conv=2, hidden=4, outputs=0, init="standard")  # an automatic-growth decision
    after = task_outputs(model, x)
    assert torch.equal(after[1], before[1])
    # the new entries of task 2's existing units are 0: its function is kept, up to rounding
    torch.testing.assert_close(after[2], before[2])
    assert model.convs[2].unit_task.tolist() == [1] * 4 + [2] * 6
    with pytest.raises(ValueError, match="newest task"):
        model.grow(1)
    with pytest.raises(ValueError, match="newest task"):
        model.grow(4)


def test_standard_init_bounds_new_units_by_their_fan_in():
    model = small_net("read")
    grow_small(model, 2)
    w = model.convs[1].weight.detach()
    rows_2 = slice(4, 8)
    bound = 1 / (8 * 9) ** 0.5  # task 2's units read tasks 1 and 2: 8 channels x 3 x 3
    assert float(w[rows_2].abs().max()) <= bound and float(w[rows_2].abs().max()) > bound / 2
    assert bool((w[:4, 4:] == 0).all())  # task 1's units never read task 2's


# --- (c) sizes ------------------------------------------------------------------------------


def test_parameter_counts_follow_the_sources_growth_schedule():
    model = source_network(device="meta")
    first = 3 * 64 * 9 + 64 + 3 * (64 * 64 * 9 + 64) + 1024 * 512 + 512 + 512 * 10 + 10
    assert model.parameter_counts(1).total == first == 642_506
    totals = [first]
    for task, step in enumerate(SOURCE_SCHEDULE[1:], start=2):
        predicted = model.parameters_after_grow(step.conv, step.hidden, step.outputs)
        added = model.grow(task, step.conv, step.hidden, step.outputs)
        counts = model.parameter_counts(task)
        assert counts.total == predicted == totals[-1] + added
        assert counts.added_by_last_grow == added
        totals.append(counts.total)
    assert totals == schedule_totals() == [642_506, 2_565_012, 5_767_518, 16_217_410]
    # conv1 3 -> 320, conv2..4 320 -> 320, fc 320 * 16 -> 2560, head 2560 -> 130
    final = 320 * 27 + 320 + 3 * (320 * 320 * 9 + 320) + 5120 * 2560 + 2560 + 2560 * 130 + 130
    assert source_schedule_parameters() == final == 16_217_410
    assert [totals[i + 1] - totals[i] for i in range(3)] == [1_922_506, 3_202_506, 10_449_892]
    assert [g["parameters_added"] for g in model.growth] == [1_922_506, 3_202_506, 10_449_892]
    assert dense_parameter_count(3, [320] * 4, 2560, 130) == 16_217_410

    # isolated: a task uses its own column only (CIFAR-100: 128 / 1024 / 100)
    def column(c, h, o):
        return 27 * c + c + 3 * (c * c * 9 + c) + c * 16 * h + h + h * o + o

    for task, step in enumerate(SOURCE_SCHEDULE, start=1):
        counts = model.parameter_counts(task)
        assert counts.in_use == counts.trainable == column(*step)
    assert model.parameter_counts(4).in_use == 2_647_012


def test_read_mode_counts_the_earlier_columns_a_task_reads():
    model = source_network(mode="read", device="meta")
    for task, step in enumerate(SOURCE_SCHEDULE[1:], start=2):
        model.grow(task, step.conv, step.hidden, step.outputs)
    c = [s.conv for s in SOURCE_SCHEDULE]
    h = [s.hidden for s in SOURCE_SCHEDULE]
    o = [s.outputs for s in SOURCE_SCHEDULE]
    below = [sum(c[: s + 1]) for s in range(4)]  # channels a unit of task s + 1 reads
    for t in range(1, 5):
        rows = range(t)  # the units of tasks 1..t are active, each reading tasks up to its own
        conv = sum(c[s] * 28 + 3 * c[s] * (below[s] * 9 + 1) for s in rows)
        fc = sum(h[s] * (below[s] * 16 + 1) for s in rows)
        head = o[t - 1] * (sum(h[:t]) + 1)
        counts = model.parameter_counts(t)
        assert counts.in_use == conv + fc + head
        last = t - 1
        own = c[last] * 28 + 3 * c[last] * (below[last] * 9 + 1) + h[last] * (below[last] * 16 + 1) + head
        assert counts.trainable == own
    assert model.parameter_counts(4).total == 16_217_410


@pytest.mark.parametrize("mode", MODES)
def test_masks_agree_with_the_counts(mode):
    model = three_task_net(mode)
    for task in (1, 2, 3):
        counts = model.parameter_counts(task)
        in_use, trainable = model.in_use_masks(task), model.trainable_masks(task)
        assert sum(int(m.sum()) for m in in_use.values()) == counts.in_use
        assert sum(int(m.sum()) for m in trainable.values()) == counts.trainable
        assert all(bool((trainable[n] <= in_use[n]).all()) for n in in_use)
        frozen = model.frozen_masks(task)
        assert sum(int(m.sum()) for m in frozen.values()) == counts.total - counts.trainable


# --- (d) checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_round_trip_is_bit_identical(mode, tmp_path):
    model = small_net(mode)
    train_task(model, 1, OPTIMIZERS[0])
    grow_small(model, 2)
    model.grow(3, conv=[2, 3, 4, 5], hidden=6, outputs=7, init="source")
    train_task(model, 3, OPTIMIZERS[2])
    path = tmp_path / "model.pt"
    torch.save({"spec": json.dumps(model.spec()), "state": model.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    spec = json.loads(saved["spec"])
    assert spec == model.spec()
    x = fixed_batch()
    expected = task_outputs(model, x)
    rebuilt = GrowingTaskNet.from_spec(spec)
    rebuilt.load_state_dict(saved["state"], strict=True)
    on_meta = GrowingTaskNet.from_spec(spec, device="meta")  # as clpipe.checkpoints.load_model does
    on_meta.load_state_dict(saved["state"], strict=True, assign=True)
    for other in (rebuilt, on_meta):
        got = task_outputs(other, x)
        assert all(torch.equal(got[t], expected[t]) for t in expected)
        assert other.spec() == model.spec()
        assert other.parameter_counts(3) == model.parameter_counts(3)


def test_moving_and_casting_the_network_keeps_its_outputs():
    """``.to()`` / ``.double()`` go through nn.Module._apply, which the layers must not
    shadow (clpipe.checkpoints.load_model moves every model to its device)."""
    model = small_net("read")
    grow_small(model, 2)
    x = fixed_batch()
    expected = task_outputs(model, x)
    moved = copy.deepcopy(model).to("cpu")
    assert all(torch.equal(task_outputs(moved, x)[t], expected[t]) for t in expected)
    as_double = copy.deepcopy(model).double()
    assert as_double.convs[0].weight.dtype == torch.float64
    got = task_outputs(as_double, x.double())
    assert all(torch.allclose(got[t].float(), expected[t], atol=1e-5) for t in expected)


def test_a_state_with_another_task_split_is_refused():
    model = small_net("isolated")
    grow_small(model, 2)
    spec = model.spec()
    spec["conv"] = [[5, 3]] * 4  # the same shapes, another split between the tasks
    with pytest.raises(ValueError, match="unit_task"):
        GrowingTaskNet.from_spec(spec).load_state_dict(model.state_dict())


# --- (e) predictions ----------------------------------------------------------------------


def test_prediction_is_the_argmax_over_the_tasks_own_head():
    model = small_net("isolated")
    grow_small(model, 2)
    model.grow(3, conv=4, hidden=8, outputs=5)
    with torch.no_grad():
        model.head.bias[3:6] -= 100.0  # every logit of task 2 is negative
    model.eval()
    x = fixed_batch()
    logits = model(x, 2)
    assert logits.shape == (6, 3) and bool((logits < 0).all())
    predicted = model.predict(x, 2)
    assert torch.equal(predicted, logits.argmax(dim=1))
    # a source-style output (every head, zeros for the inactive ones) would pick another task's zero
    dense = torch.cat([torch.zeros(6, 3), logits, torch.zeros(6, 5)], dim=1)
    assert not bool(((dense.argmax(dim=1) >= 3) & (dense.argmax(dim=1) < 6)).any())
    assert model(x, 3).shape == (6, 5)


def test_inactive_units_are_exactly_zero():
    torch.manual_seed(0)
    conv = TaskMaskedConv2d([2, 3, 4], [0, 5, 6, 7])
    x = torch.randn(2, 18, 5, 5)
    out = conv(x, 2, "isolated")
    assert out.shape == (2, 9, 5, 5)
    assert bool((out[:, :2] == 0).all()) and bool((out[:, 5:] == 0).all())
    assert bool((out[:, 2:5] != 0).any())
    out = conv(x, 2, "read")
    assert bool((out[:, 5:] == 0).all()) and bool((out[:, :5] != 0).all())
    linear = TaskMaskedLinear([2, 3], [4, 0, 0])  # reads task-free inputs only
    y = linear(torch.randn(3, 4), 1, "isolated")
    assert bool((y[:, 2:] == 0).all()) and linear.own_outputs(torch.randn(3, 4), 2).shape == (3, 3)


# --- (f) what a task's output depends on ------------------------------------------------


def expected_in_use(model, task):
    """From the task-id buffers alone: rows of the active units (the task's own head only),
    columns of the task-free inputs and of the tasks each row may read."""
    masks = {}
    for name, layer in [(f"convs.{i}", c) for i, c in enumerate(model.convs)] + [
        ("fc", model.fc),
        ("head", model.head),
    ]:
        rows, cols = layer.unit_task[:, None], layer.input_task[None, :]
        if model.mode == "isolated":
            active, reads = rows == task, (cols == 0) | (cols == rows)
        else:  # a unit of task s reads tasks <= s: never a newer task's units
            active, reads = rows <= task, cols <= rows
        if name == "head":
            active = rows == task
        weight = active & reads
        masks[f"{name}.weight"] = weight.view(*weight.shape, *[1] * (layer.weight.dim() - 2)).expand(
            layer.weight.shape
        )
        masks[f"{name}.bias"] = active[:, 0]
    return masks


@pytest.mark.parametrize("mode", MODES)
def test_in_use_masks_are_the_columns_each_unit_may_read(mode):
    model = three_task_net(mode)
    for task in (1, 2, 3):
        got, expected = model.in_use_masks(task), expected_in_use(model, task)
        assert set(got) == set(expected)
        for name in got:
            assert torch.equal(got[name], expected[name]), (task, name)


@pytest.mark.parametrize("mode", MODES)
def test_a_tasks_output_depends_only_on_the_weights_it_uses(mode):
    model = small_net(mode)
    grow_small(model, 2)
    grow_small(model, 3)
    x = fixed_batch()
    expected = task_outputs(model, x)
    for task in (1, 2, 3):
        unused = {n: ~m for n, m in model.in_use_masks(task).items()}
        assert torch.equal(task_outputs(perturbed(model, unused), x)[task], expected[task])
        for other in (1, 2, 3):
            if other == task:
                continue
            # every entry of the other task's units (its rows in every layer but the heads)
            rows = model.trainable_masks(other)
            rows = {n: m if not n.startswith("head.") else torch.zeros_like(m) for n, m in rows.items()}
            changed = not torch.equal(task_outputs(perturbed(model, rows), x)[task], expected[task])
            assert changed == (mode == "read" and other < task), (task, other)


# --- automatic growth ---------------------------------------------------------------------


def test_growth_decision():
    model = small_net("read")
    before = model.total_parameters()
    after = model.parameters_after_grow(4, 8, 3)
    low = decide_growth(2, 0.41, 0.6, before, after)
    assert low.grow and low.record() == {
        "task": 2,
        "accuracy": 0.41,
        "threshold": 0.6,
        "grow": True,
        "parameters_before": before,
        "parameters_after": after,
    }
    assert grow_small(model, 2) == after - before
    high = decide_growth(3, 0.9, 0.6, after, after + 1000)
    assert not high.grow and high.parameters_after == after
    with pytest.raises(ValueError, match="accuracy"):
        decide_growth(3, float("nan"), 0.6, after, after)
