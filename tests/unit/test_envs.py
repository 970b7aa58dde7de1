"""The conda environments pin what pyproject.toml pins; every rule is fully declared."""

import re
import tomllib

import pytest
import yaml

from conftest import ROOT


def pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", dep).groups()
        pins[name.lower()] = version
    return pins


def env_pins(path):
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep["pip"]:
                name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", pip_dep).groups()
                pins[name.lower()] = version
    return env, pins


ENVS = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_pins_match_pyproject(path):
    pins = pyproject_pins()
    env, env_pinned = env_pins(path)
    assert env_pinned, f"{path.name} pins nothing"
    for name, version in env_pinned.items():
        assert name in pins, f"{path.name} installs {name}, which pyproject.toml does not list"
        assert version == pins[name], f"{path.name}: {name}=={version}, pyproject.toml: =={pins[name]}"
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"]


def rule_blocks():
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
            yield smk.name, m.group(1), m.group(2)


def test_every_rule_has_log_benchmark_resources_conda_and_a_src_script():
    used_envs = set()
    rules = list(rule_blocks())
    assert len(rules) >= 9
    for smk, rule, body in rules:
        for directive in ("log:", "benchmark:", "resources:", "threads:", "conda:", "script:"):
            assert re.search(rf"^\s+{directive}", body, flags=re.M), f"{smk}: rule {rule} has no {directive}"
        env = re.search(r'conda:\s*\n\s*"\.\./\.\./(envs/[\w.]+)"', body).group(1)
        script = re.search(r'script:\s*\n\s*"\.\./\.\./(src/[\w.]+)"', body).group(1)
        assert (ROOT / env).is_file(), f"rule {rule}: {env} missing"
        assert (ROOT / script).is_file(), f"rule {rule}: {script} missing"
        used_envs.add(env)
    assert used_envs == {f"envs/{p.name}" for p in ENVS}


def test_model_steps_ask_for_a_gpu_and_short_steps_ride_in_a_group():
    rules = {rule: body for _, rule, body in rule_blocks()}
    # the steps that run a model on its device (init_model draws the init on the CPU)
    gpu_steps = {"train_first_task", "train_next_task", "compute_importance", "evaluate"}
    model_steps = gpu_steps | {"init_model"}
    for rule in gpu_steps:
        assert re.search(r"^\s+gpu=gpus,", rules[rule], flags=re.M), f"rule {rule} asks for no GPU"
    for rule, body in rules.items():
        if rule not in gpu_steps:
            assert "gpu=" not in body, f"rule {rule} runs no model on a GPU but asks for one"
        group = re.search(r"group:\s*\n\s*(.+)", body)
        if rule in model_steps | {"update_progress"}:
            assert group and group.group(1).startswith("model_group("), (
                f"rule {rule}: not in its model's group"
            )
        elif rule in ("aggregate",) or rule.startswith("plot_"):
            assert group and group.group(1) == '"figures"', f"rule {rule}: not in the figures group"


def test_the_version_is_in_one_place():
    """pyproject.toml reads the version from clpipe/__init__.py; the installed metadata agrees."""
    from importlib.metadata import version

    import clpipe

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", clpipe.__version__)
    assert version("clpipe") == clpipe.__version__, 'reinstall: pip install -e ".[test]"'
