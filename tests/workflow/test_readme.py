"""Every command and example of the README and of docs/your_code.md (its worked
examples), as written, in a copy of the repository.

The commands are read from their own text: their ``bash`` blocks and the
``snakemake ...`` commands quoted in their prose. Each is checked the way it can be here:
Snakemake commands as dry runs (the first run and its report run for real in the slow
test; the worked example's method, as printed, trains in tests/workflow/test_user_code.py), the
install command as the one CI runs, the test commands by collecting what they select,
TensorBoard's by the program being installed. A command this file does not know how to
check fails the test: add its check here.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

README = (ROOT / "README.md").read_text()
YOUR_CODE = (ROOT / "docs" / "your_code.md").read_text()  # the README's worked examples
FIRST_RUN = "snakemake --cores 2 --configfile config/quick.yaml --config 'run=[split_mnist_mlp_quick]'"


def bash_commands(text: str) -> list[str]:
    """The commands of the ``bash`` blocks: continued lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def prose_commands(text: str) -> list[str]:
    """``snakemake ...`` commands quoted in the prose; those with a <placeholder> are
    templates, not commands."""
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return [c for c in re.findall(r"`(snakemake [^`]+)`", outside) if "<" not in c]


def examples(text: str) -> dict[str, str]:
    """The files the README prints for the reader to save: path -> content."""
    return dict(re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", text, re.S))


COMMANDS = list(dict.fromkeys(bash_commands(README + YOUR_CODE) + prose_commands(README + YOUR_CODE)))


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The repository's files as a fresh clone has them (tracked and new, not ignored),
    with the example files of the README and docs/your_code.md saved where they say."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    target = tmp_path_factory.mktemp("clone")
    for name in files:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    for name, text in examples(README + YOUR_CODE).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    return target


def run_as_written(command: str, where, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """A README command run in ``where`` as a shell would (its VAR=value prefix, $PWD),
    this Python's snakemake for ``snakemake``, with ``extra`` arguments after it."""
    words = shlex.split(command)
    env = dict(os.environ)
    while "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value.replace("$PWD", str(where))
    assert words[0] == "snakemake", command
    args = [sys.executable, "-m", "snakemake", *words[1:], *extra]
    return subprocess.run(args, cwd=where, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_readme_has_its_commands_and_examples():
    """The examples (a method and its config, a model: run by test_user_code) are valid
    YAML and Python as printed, and the README links them."""
    assert FIRST_RUN in COMMANDS
    assert {"mymethods/anchor.py", "my_config.yaml", "mymodels/tiny.py"} <= set(examples(YOUR_CODE))
    assert "(docs/your_code.md#a-method-l2-anchoring)" in README
    assert "PYTHONPATH=$PWD snakemake --cores 2 --configfile my_config.yaml" in COMMANDS
    for text in (README, YOUR_CODE):
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
            yaml.safe_load(block)
        for name, code in examples(text).items():
            if name.endswith(".py"):
                compile(code, name, "exec")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_works_as_written(command, copy):
    program = shlex.split(command)[0]
    if command.startswith("python3 -m venv .venv"):  # the install: what CI runs, exactly
        assert command in (ROOT / ".ci" / "run").read_text()
    elif command.startswith("python -m pytest"):
        # its options and marker expression as written, on one small module (the suite
        # itself collects everything: collecting it again costs ~13 s a command)
        words = [*shlex.split(command)[1:], "--collect-only", "-q", "-p", "no:cacheprovider"]
        out = subprocess.run(
            [sys.executable, *words, "tests/unit/test_docs.py"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        counted = re.search(r"\d+(/\d+)? tests? (collected|selected)", out.stdout)
        assert out.returncode == 0 and counted, out.stdout[-2000:]
    elif program == "tensorboard":
        assert shutil.which("tensorboard"), "tensorboard is not installed (the test extra has it)"
        assert re.fullmatch(r"tensorboard --logdir results/\w+/tensorboard", command), command
    elif "--rulegraph" in command:  # prints the graph of rules, runs nothing
        out = run_as_written(command, copy)
        assert out.returncode == 0 and out.stdout.lstrip().startswith("digraph"), out.stderr[-2000:]
    elif "--report" in command:
        pytest.skip("a report needs a finished run: the first run's is built by the slow test below")
    elif "=" in program or program == "snakemake":
        if "--use-conda" in command and shutil.which("conda") is None:
            pytest.skip("conda is not installed on this machine")
        out = run_as_written(command, copy, "-n")
        assert out.returncode == 0, (command, out.stdout[-2000:], out.stderr[-3000:])
        assert "This was a dry-run" in out.stdout + out.stderr, command
    else:
        pytest.fail(
            f"the README's command {command!r} has no check in tests/workflow/test_readme.py: add one"
        )


@pytest.mark.slow
def test_the_first_run_finishes_as_the_readme_says(copy, data_dir):
    """The first run exactly as written (MNIST where its download would put it), the
    files the README tells the reader to look at, and its report."""
    (copy / "data").mkdir(exist_ok=True)
    (copy / "data" / "MNIST").symlink_to(data_dir / "MNIST")
    out = run_as_written(FIRST_RUN, copy)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"time: 0:\d\d:\d\d elapsed, about 0:00:00 left", out.stderr), out.stderr[-2000:]
    results = copy / "results" / "split_mnist_mlp_quick"
    assert "| ewc | ewc | 5 |" in (results / "summary.md").read_text()
    for figure in ("forgetting", "methods", "comparisons", "training", "accuracy_matrix/ewc"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    report = next(c for c in COMMANDS if "--report" in c)
    out = run_as_written(report, copy)
    assert out.returncode == 0 and (copy / "report.html").stat().st_size > 100_000, out.stderr[-2000:]
    # the worked example's command runs here as a dry run (the test above); its method,
    # as printed, trains through the workflow in tests/workflow/test_user_code.py
