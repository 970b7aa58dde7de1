"""Tasks defined by an input transform: Permuted and Rotated MNIST (clpipe.transforms),
their config, their data stored once and transformed on loading."""

import copy

import pytest
import torch
import yaml

from clpipe import plan, transforms
from clpipe.config import ConfigError, validate_config
from clpipe.data.pipeline import load_tasks
from clpipe.data.tasks import build_tasks
from clpipe.io import save
from conftest import ROOT, SCHEMA


def test_a_permutation_moves_every_channel_s_pixels_the_same_way():
    images = torch.arange(2 * 2 * 3 * 3, dtype=torch.uint8).view(2, 2, 3, 3)
    out = transforms.apply({"permute": 5}, images)
    order = transforms.permutation(5, 9)
    assert torch.equal(out.view(2, 2, 9), images.view(2, 2, 9)[:, :, order])
    assert torch.equal(transforms.apply({"permute": 5}, images), out)  # a fixed order for a seed
    assert not torch.equal(transforms.apply({"permute": 6}, images), out)
    assert sorted(out.view(-1).tolist()) == sorted(images.view(-1).tolist())  # only moved
    assert transforms.apply(None, images) is images


def test_a_rotation_turns_the_image_about_its_centre():
    image = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    image[0, 0, 0, 2] = 200  # top middle
    turned = transforms.apply({"rotate": 90}, image)
    assert turned[0, 0, 2, 0] == 200 and turned.sum() == 200  # counter-clockwise: the left middle
    assert torch.equal(transforms.apply({"rotate": 360}, image), image)


def test_a_benchmark_expands_into_its_tasks():
    assert transforms.expand({"permuted": 3, "seed": 2}) == [
        {},
        {"transform": {"permute": 2002}},
        {"transform": {"permute": 2003}},
    ]
    assert transforms.expand({"permuted": 2, "first_unpermuted": False, "classes": [0, 1]}) == [
        {"classes": [0, 1], "transform": {"permute": 1}},
        {"classes": [0, 1], "transform": {"permute": 2}},
    ]
    assert transforms.expand({"rotated": [0, 45.0]}) == [{}, {"transform": {"rotate": 45.0}}]


def config(tasks, scenario="domain"):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    exp = cfg["experiments"]["tiny"]
    exp.update(tasks=tasks, scenario=scenario)
    exp["data"].update(max_train_per_task=2000)  # ten classes a task: enough of each to validate
    exp["arms"] = {"finetune": {"method": "finetune"}, "ewc": {"method": "ewc", "lambda": 10.0}}
    return cfg


def test_the_config_takes_a_benchmark_and_tasks_with_transforms_of_their_own():
    exp = validate_config(config({"permuted": 4}), str(SCHEMA))["tiny"]
    assert [t.transform for t in exp.tasks] == [None, ("permute", 2), ("permute", 3), ("permute", 4)]
    assert all(t.classes == tuple(range(10)) for t in exp.tasks) and exp.head_size() == 10
    spec = plan.data_spec(exp)
    assert spec["tasks"][1] == {"dataset": "mnist", "classes": list(range(10)), "transform": {"permute": 2}}
    assert "transform" not in spec["tasks"][0]  # a plain task's spec is what it always was
    task_il = validate_config(config({"rotated": [0, 30, 60]}, "task"), str(SCHEMA))["tiny"]
    assert task_il.head_size() == 30 and task_il.tasks[2].transform == ("rotate", 60)
    mixed = [[0, 1], {"classes": [0, 1], "transform": {"rotate": 90}}]
    assert validate_config(config(mixed), str(SCHEMA))["tiny"].tasks[1].transform == ("rotate", 90)


OVERLAP = [
    [0, 1],
    {"classes": [0, 1], "transform": {"permute": 3}},
    {"classes": [1], "transform": {"permute": 3}},
]


@pytest.mark.parametrize(
    "tasks, key, message",
    [
        (OVERLAP, "experiments.tiny.tasks[2]", "class 1 of mnist under permute 3 is already in task 2"),
        ({"permuted": 0}, "experiments.tiny.tasks.permuted", "0 is less than the minimum of 1"),
        (
            {"rotated": [0, 90], "permuted": 2},
            "experiments.tiny.tasks",
            "is not valid under any of the given",
        ),
        (
            [{"classes": [0, 1], "transform": {"shear": 3}}],
            "experiments.tiny.tasks[0]",
            "is not valid under any",
        ),
    ],
    ids=["overlap under one transform", "no tasks", "two benchmarks", "unknown transform"],
)
def test_a_wrong_benchmark_is_refused_naming_the_key(tasks, key, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(config(copy.deepcopy(tasks)), str(SCHEMA))
    assert err.value.key.startswith(key), err.value.key


def test_transformed_tasks_share_one_copy_of_their_images_on_disk_and_load_transformed(tmp_path, data_dir):
    exp = validate_config(config({"permuted": 5}), str(SCHEMA))["tiny"]
    spec = plan.data_spec(exp)
    tasks = build_tasks(data_dir, spec)
    save(tmp_path / "five.pt", "tasks", {"step": "test"}, tasks=tasks, spec=spec)
    one = spec | {"tasks": spec["tasks"][:1]}  # its first task alone
    save(tmp_path / "one.pt", "tasks", {"step": "test"}, tasks=build_tasks(data_dir, one), spec=one)
    five, single = (tmp_path / "five.pt").stat().st_size, (tmp_path / "one.pt").stat().st_size
    assert five < 1.01 * single  # the images once, not five times
    loaded = load_tasks(tmp_path / "five.pt")
    plain, second = loaded[0].train.x, loaded[1].train.x
    assert torch.equal(second, transforms.apply({"permute": 2}, plain))
    assert torch.equal(loaded[0].train.y, loaded[1].train.y)  # the same samples, the same labels
