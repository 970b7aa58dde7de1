"""Configs the check must refuse, each with the exact key its error names (tests/unit/test_config.py
checks them against the validator, tests/workflow/test_faults.py through Snakemake)."""

import yaml

from conftest import ROOT


def base_config():
    return yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


def mutate(fn):
    cfg = base_config()
    fn(cfg)
    return cfg


def _set(path, value):
    def fn(cfg):
        node = cfg
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return fn


def _del(path):
    def fn(cfg):
        node = cfg
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return fn


E = ["experiments", "tiny"]
X = "experiments.tiny"


def _arm_train(changes):
    return _set(E + ["arms", "x"], {"method": "finetune", "train": changes})


# (config change, the exact key the error must name)
BAD_CONFIGS = [
    (_set(E + ["arms", "x"], {"method": "nope"}), f"{X}.arms.x.method"),
    (_set(E + ["arms", "x"], {"start_from": "mag_b99", "freeze": [10]}), f"{X}.arms.x.start_from"),
    (_set(E + ["arms", "x"], {"method": "mag", "freeze": [100]}), f"{X}.arms.x.freeze[0]"),
    (_set(E + ["arms", "x"], {"method": "mag", "freeze": [-5]}), f"{X}.arms.x.freeze[0]"),
    (_set(E + ["arms", "x"], {"method": "mag", "freeze": [10, 20, 30]}), f"{X}.arms.x.freeze"),
    (_set(E + ["arms", "x"], {"method": "finetune", "freeze": [10]}), f"{X}.arms.x.freeze"),
    (_set(E + ["arms", "x"], {"method": "mag", "freeze_total": [60, 40]}), f"{X}.arms.x.freeze_total[1]"),
    (_set(E + ["arms", "x"], {"start_from": "mag_b50", "freeze_total": [30]}), f"{X}.arms.x.freeze_total[0]"),
    (_set(E + ["arms", "x"], {"method": "mag", "freeze": 5, "freeze_total": 10}), f"{X}.arms.x.freeze_total"),
    (_set(E + ["arms", "x"], {"method": "ewc"}), f"{X}.arms.x.lambda"),
    (_set(E + ["arms", "x"], {"start_from": "mag_b20_c50"}), f"{X}.arms.x.start_from"),
    (_set(E + ["arms", "x"], {"start_from": "mag_b20", "method": "finetune"}), f"{X}.arms.x.method"),
    (_set(E + ["arms", "x"], {"freeze": [10]}), f"{X}.arms.x.method"),
    (_set(E + ["arms", "scratch"], {"method": "finetune"}), f"{X}.arms.scratch"),
    (_set(E + ["arms", "a"], {"start_from": "b"}), f"{X}.arms.a.start_from"),
    (_set(E + ["arms"], {}), f"{X}.arms"),
    (_set(E + ["tasks"], [[0, 1], [1, 2]]), f"{X}.tasks[1]"),
    (_set(E + ["tasks"], [[0, 1], [2, 10]]), f"{X}.tasks[1]"),
    (_set(E + ["tasks"], []), f"{X}.tasks"),
    (_set(E + ["scenario"], "online"), f"{X}.scenario"),
    (_set(E + ["model", "name"], "resnet9"), f"{X}.model.name"),
    (_set(E + ["train", "optimizer", "name"], "rmsprop"), f"{X}.train.optimizer.name"),
    (_set(E + ["train", "optimizer", "lr"], 0), f"{X}.train.optimizer.lr"),
    (_set(E + ["train", "optimizer", "momentum"], 0.9), f"{X}.train.optimizer.momentum"),
    (_set(E + ["train", "batch_size"], 0), f"{X}.train.batch_size"),
    (_set(E + ["train", "epochs"], -1), f"{X}.train.epochs"),
    (_set(E + ["train", "foo"], 1), f"{X}.train.foo"),
    (_set(["seeds"], [0, 1.5]), "seeds[1]"),
    (_del(["data_dir"]), "data_dir"),
    (_set(E + ["input", "size"], 16), f"{X}.input.size"),
    (_set(E + ["input", "normalize"], {"mean": [0.5, 0.5], "std": [0.5, 0.5]}), f"{X}.input.normalize.mean"),
    (_set(["run"], ["nothere"]), "run[0]"),
    (_del(E + ["dataset"]), f"{X}.dataset"),
    (_set(E + ["arms", "x"], {"start_from": "joint"}), f"{X}.arms.x.start_from"),
    (_set(E + ["arms", "x"], {"method": "joint", "freeze": [10]}), f"{X}.arms.x.freeze"),
    (
        _set(E + ["methods", "replay", "budget"], {"fraction": 0.1, "memory": 10}),
        f"{X}.methods.replay.budget",
    ),
    (_set(E + ["methods", "replay", "budget"], {"fraction": 1.5}), f"{X}.methods.replay.budget.fraction"),
    (_set(E + ["methods", "replay", "score"], "loss"), f"{X}.methods.replay.score"),
    (_set(E + ["tasks"], [{"classes": [0, 1], "bucket": 1}]), f"{X}.tasks[0].bucket"),
    (_set(E + ["data", "image_size"], 64), f"{X}.data.image_size"),
    (_set(E + ["input", "crop"], {"size": 30}), f"{X}.input.crop.size"),
    (_set(E + ["input", "crop"], {"size": 20, "train": "sideways"}), f"{X}.input.crop.train"),
    (_set(E + ["train", "schedule"], {"name": "step"}), f"{X}.train.schedule.name"),
    (
        _set(E + ["train", "early_stopping"], {"patience": 2, "min_epochs": 3}),
        f"{X}.train.early_stopping.min_epochs",
    ),
    (_set(E + ["report"], {"metrics": ["acc", "auc"]}), f"{X}.report.metrics[1]"),
    (_set(E + ["train", "precision"], "fp16"), f"{X}.train.precision"),
    (_set(E + ["train", "channels_last"], "yes"), f"{X}.train.channels_last"),
    # an arm's own train settings: its keys checked as the experiment's are
    (_arm_train({"optimizer": {"lr": 0}}), f"{X}.arms.x.train.optimizer.lr"),
    (_arm_train({"optimizer": {"momentum": 0.9}}), f"{X}.arms.x.train.optimizer.momentum"),
    (_arm_train({"epochs": 0}), f"{X}.arms.x.train.epochs"),
    (_arm_train({"lr": 0.1}), f"{X}.arms.x.train.lr"),
    (_arm_train({"iterations": 5, "early_stopping": {"patience": 1}}), f"{X}.arms.x.train.early_stopping"),
    (
        _arm_train({"optimizer_state": "carry", "optimizer": {"name": "sgd", "lr": 0.1}}),
        f"{X}.arms.x.train.optimizer.name",
    ),
    (_arm_train("fast"), f"{X}.arms.x.train"),
]
