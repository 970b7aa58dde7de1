"""The method interface: which hook runs when, what the loss hook sees, a method's own
state through a killed job, what its files hand back, and methods that train their first
task themselves (clpipe.methods.base, clpipe.training, clpipe.plan)."""

import copy
import textwrap

import pytest
import torch
import yaml
from test_training import TRAIN, VGG, run, toy_task

from clpipe import io, plan
from clpipe.config import validate_config
from clpipe.data.pipeline import InputPipeline
from clpipe.epochs import EpochCheckpoint
from clpipe.methods.base import ContinualMethod
from clpipe.networks import build_model
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import train_task
from conftest import ROOT, SCHEMA


class Recording(ContinualMethod):
    """Records every hook the loop calls, and what the loss hook is given."""

    def __init__(self):
        super().__init__({})
        self.calls, self.batches = [], []

    def extra_training_samples(self):
        self.calls.append("extra_training_samples")

    def attach(self, optimizer, model):
        self.calls.append("attach")

    def penalty(self, model):
        self.calls.append("penalty")

    def batch_loss(self, model, batch):
        self.calls.append("batch_loss")
        self.batches.append(batch)

    def after_backward(self, model):
        self.calls.append("after_backward")

    def after_step(self, model):
        self.calls.append("after_step")

    def state_dict(self):
        self.calls.append("state_dict")
        return {}


def test_the_hooks_run_in_the_documented_order():
    method = Recording()
    run(method=method, cfg={**TRAIN, "iterations": 9})  # 7 steps, then 2
    step = ["penalty", "batch_loss", "after_backward", "after_step"]
    assert method.calls == ["extra_training_samples", "attach"] + step * 7 + ["state_dict"] + step * 2 + [
        "state_dict"
    ]


def test_the_loss_hook_sees_the_batch_and_what_it_returns_is_trained_on():
    method = Recording()
    model, _ = run(method=method, cfg={**TRAIN, "epochs": 1})
    first = method.batches[0]
    assert first.inputs.shape == (16, 1, 8, 8) and first.inputs.dtype == torch.float32
    assert first.images.dtype == torch.uint8 and first.images.shape == (16, 1, 8, 8)
    assert first.logits.shape == (16, 2) and first.logits.requires_grad  # to be differentiated
    assert first.targets.shape == (16,) and first.task == 1 and first.sample_task is None

    class Pull(ContinualMethod):  # pulls the logits towards 0: training differs from none
        def batch_loss(self, model, batch):
            return 10.0 * batch.logits.pow(2).mean()

    pulled, _ = run(method=Pull({}), cfg={**TRAIN, "epochs": 1})
    plain, _ = run(cfg={**TRAIN, "epochs": 1})
    x = toy_task().test.x.float()
    assert pulled(x).abs().mean() < 0.5 * plain(x).abs().mean()


class Counting(ContinualMethod):
    """A method with state of its own through a task: the sum of every step's weights'
    change, which a resumed job must carry on from where it was."""

    def __init__(self, kill_at=None):
        super().__init__({})
        self.kill_at, self.steps, self.moved, self.before = kill_at, 0, torch.zeros(()), None

    def after_backward(self, model):
        self.before = [p.detach().clone() for p in model.parameters()]

    def after_step(self, model):
        self.steps += 1
        self.moved = self.moved + sum(
            (p.detach() - b).abs().sum() for p, b in zip(model.parameters(), self.before, strict=True)
        )
        if self.steps == self.kill_at:
            raise KeyboardInterrupt("killed")

    def state_dict(self):
        return {"steps": self.steps, "moved": self.moved.clone()}

    def load_state_dict(self, state):
        self.steps, self.moved = state["steps"], state["moved"].clone()


def counted_run(path, method):
    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(7)
    model = build_model(VGG)
    train_task(
        model, toy_task(), scenario=Scenario("domain", [[0, 1]]),
        pipeline=InputPipeline(VGG["input"], torch.device("cpu")), train_cfg={**TRAIN, "epochs": 3},
        method=method, generator=g, eval_batch_size=64, checkpoint=EpochCheckpoint(str(path), "job"),
    )  # fmt: skip
    return model


def test_a_methods_own_state_goes_through_a_killed_job_bit_for_bit(tmp_path):
    reference = Counting()
    whole = counted_run(tmp_path / "ref.pt", reference)
    with pytest.raises(KeyboardInterrupt):
        counted_run(tmp_path / "resume.pt", Counting(kill_at=7 + 3))  # 7 steps an epoch: dies in epoch 2
    assert io.load(tmp_path / "resume.pt", "resume")["extra"]["method"]["steps"] == 7
    resumed = Counting()
    model = counted_run(tmp_path / "resume.pt", resumed)
    assert resumed.steps == reference.steps == 21
    assert torch.equal(resumed.moved, reference.moved)  # its state, bit for bit
    for p, q in zip(whole.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_method_that_saves_state_it_cannot_load_says_so():
    class Forgetful(ContinualMethod):
        def state_dict(self):
            return {"x": 1}

    with pytest.raises(NotImplementedError, match="Forgetful saved state it does not load back"):
        Forgetful({}).load_state_dict({"x": 1})


def test_a_method_gets_back_exactly_what_it_saved_and_can_hand_it_on(tmp_path):
    """A record handed on as progress unchanged (it still held the file's own keys, and
    saving it crashed inside clpipe with a TypeError)."""
    from clpipe.steps.importance import update_progress

    record = {"omega": {"w": torch.ones(2)}, "steps": 3}
    node = tmp_path / "e" / "seed0" / "arm" / "task2"
    io.save(node / "record.pt", "record", {"step": "train_next_task"}, **record)
    assert io.load_saved(node / "record.pt", "record").keys() == record.keys()

    class HandOn(ContinualMethod):
        def update_progress(self, previous, record):
            return record

    import clpipe.steps.importance as steps

    spec = {"experiment": "e", "seed": 0, "arm": "arm", "task": 2, "method": {"type": "x"}}
    original = steps.load_method
    steps.load_method = lambda settings: HandOn({})
    try:
        update_progress(str(node / "record.pt"), None, spec, str(node / "progress.pt"))
    finally:
        steps.load_method = original
    progress = io.load_saved(node / "progress.pt", "progress")
    assert progress["steps"] == 3 and torch.equal(progress["omega"]["w"], torch.ones(2))


OWN_FIRST = """
from clpipe.methods.traits import MethodTraits

METHOD = MethodTraits(
    name="ownfirst",
    implementation=f"{__name__}:OwnFirst",
    description="acts during its first task",
    importance=True,
    chained_importance=True,
    trains_first_task=True,
)
"""


@pytest.fixture
def own_first(tmp_path, monkeypatch):
    (tmp_path / "ownfirst_clpipe_test.py").write_text(textwrap.dedent(OWN_FIRST))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    exp = cfg["experiments"]["tiny"]
    exp["methods"]["own"] = {"type": "ownfirst_clpipe_test:OwnFirst"}
    exp["arms"] = {
        "finetune": {"method": "finetune"},
        "own": {"method": "own"},
        "own_c": {"start_from": "own", "n_tasks": 1} | {},
    }
    exp["arms"]["own"]["n_tasks"] = 2
    return cfg


def test_a_method_that_trains_its_first_task_gets_its_own_task_1(own_first):
    exp = validate_config(copy.deepcopy(own_first), str(SCHEMA))["tiny"]
    assert exp.arms["own"].first_task == 1 and exp.arms["finetune"].first_task == 2
    assert exp.lineage("own") == [("scratch", 0), ("own", 1), ("own", 2)]
    assert exp.lineage("own_c") == [("scratch", 0), ("own", 1), ("own", 2), ("own_c", 3)]
    layout = plan.Layout("R")
    assert plan.next_task_inputs(layout, exp, 0, "own", 1) == {
        "model": "R/tiny/seed0/scratch/task0/model.pt",  # from the random init, no importance
        "data": "R/tiny/data/tasks.pt",
    }
    assert (
        plan.next_task_inputs(layout, exp, 0, "own", 2)["importance"]
        == "R/tiny/seed0/own/task1/own/importance.pt"
    )
    assert "previous" not in plan.importance_inputs(layout, exp, 0, "own", 1, "own")
    assert plan.importance_inputs(layout, exp, 0, "own", 2, "own")["previous"] == (
        "R/tiny/seed0/own/task1/own/importance.pt"
    )
    # the shared task 1 stays for fine-tuning (which trains 2 and 3); own trains 1 and 2,
    # own_c 3; importance after own's tasks 1 and 2
    counts = plan.jobs_per_seed(exp)
    assert counts["train"] == 1 + 2 + 2 + 1 and counts["importance"] == 2


def test_without_an_arm_that_uses_it_the_shared_task_1_is_not_planned(own_first):
    own_first["experiments"]["tiny"]["arms"].pop("finetune")
    exp = validate_config(own_first, str(SCHEMA))["tiny"]
    assert all(owner != "scratch" or task == 0 for _, owner, task in plan.nodes(exp))
    assert plan.jobs_per_seed(exp)["train"] == 3


def test_every_hook_override_is_typed_as_the_interface_types_it():
    """A method's hooks carry the interface's types (clpipe.methods.base), so a reader
    and a type checker see what each hook gets and returns."""
    import ast

    def hooks(tree):
        (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ContinualMethod"]
        return {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}

    names = hooks(ast.parse((ROOT / "src/clpipe/methods/base.py").read_text()))
    untyped = []
    for path in sorted((ROOT / "src/clpipe/methods").glob("*.py")):
        if path.name in ("__init__.py", "base.py", "traits.py"):
            continue
        for cls in (n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)):
            for f in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in names):
                missing = [a.arg for a in f.args.args[1:] + f.args.kwonlyargs if a.annotation is None]
                if missing or f.returns is None:
                    untyped.append(f"{path.name}: {cls.name}.{f.name} ({', '.join(missing) or 'return'})")
    assert not untyped, "\n".join(untyped)


@pytest.mark.parametrize("doc", ["README.md", "ARCHITECTURE.md"])
def test_the_hook_tables_name_every_hook(doc):
    hooks = {
        name
        for name, value in vars(ContinualMethod).items()
        if callable(value) and not name.startswith("_") and name != "per_task"
    }
    table = "\n".join(
        line for line in (ROOT / doc).read_text().splitlines() if line.lstrip().startswith("| `")
    )
    missing = sorted(h for h in hooks if f"`{h}(" not in table)
    assert not missing, f"{doc}'s hook table lacks {missing}"
