"""The code each job's rerun trigger covers (clpipe.fingerprint), without running a job."""

import subprocess
import sys

from clpipe import fingerprint as fp
from clpipe.methods import REGISTRY
from conftest import ROOT

SRC = ROOT / "src"
METHODS = fp.method_modules()


def modules(script, method=None):
    own = REGISTRY[method].implementation.split(":")[0] if method else None
    return set(fp.code_modules(SRC / script, own, METHODS))


def test_the_methods_modules_are_the_registrys():
    assert set(METHODS) == {t.implementation.split(":")[0] for t in REGISTRY.values()}


def test_a_job_runs_its_own_method_and_no_other():
    mag = modules("train_next_task.py", "mag")
    assert "clpipe.methods.mag" in mag and "clpipe.methods.base" in mag
    assert not {"clpipe.methods.ewc", "clpipe.methods.replay", "clpipe.methods.finetune"} & mag
    assert "clpipe.methods.finetune" in modules("train_first_task.py", "finetune")
    assert modules("compute_importance.py", "ewc") & set(METHODS) == {"clpipe.methods.ewc"}


def test_the_dag_side_and_the_logs_are_in_no_jobs_code():
    for script in sorted(p.name for p in SRC.glob("*.py")):
        found = modules(script)
        dag_side = {"clpipe.config", "clpipe.plan", "clpipe.fingerprint", "clpipe.logs", "clpipe"}
        assert not dag_side & found, script


def test_tables_and_figures_run_no_training_code():
    # and the CPU pins every script sets before torch loads (they change a CPU result),
    # and the live view's writer (the tables as TensorBoard text, logging.tensorboard),
    # and every job's receipt (clpipe.steps.job, clpipe.receipts with its hash)
    tables = {"clpipe.aggregate", "clpipe.results_tables", "clpipe.comparisons", "clpipe.rendering",
              "clpipe.cpu_isa", "clpipe.errors", "clpipe.io", "clpipe.layout", "clpipe.live",
              "clpipe.metrics", "clpipe.stats", "clpipe.steps.job", "clpipe.receipts",
              "clpipe.hashing"}  # fmt: skip
    assert modules("aggregate.py") == tables
    aggregation = {"clpipe.aggregate", "clpipe.results_tables", "clpipe.comparisons", "clpipe.rendering"}
    for plot in ("plot_experiment.py", "plot_setting_figure.py", "plot_accuracy_matrix.py"):
        found = modules(plot)
        assert "clpipe.figures" in found
        assert not {"clpipe.training", "clpipe.networks", *aggregation} & found, plot


def test_docstrings_and_comments_are_not_code(tmp_path):
    a = tmp_path / "a.py"
    b = tmp_path / "b.py"
    a.write_text('"""Doc."""\n\ndef f(x):\n    """Doc of f."""\n    return x + 1  # why\n')
    b.write_text("def f(\n    x,\n):\n    return x+1\n")
    c = tmp_path / "c.py"
    c.write_text("def f(x):\n    return x + 2\n")
    assert fp._parsed(a)[0] == fp._parsed(b)[0] != fp._parsed(c)[0]


def test_fingerprints_are_built_without_torch_and_quickly():
    code = f"""
import sys, time, pathlib
sys.path.insert(0, {str(SRC)!r})
t = time.perf_counter()
from clpipe.fingerprint import job_code
from clpipe.methods import REGISTRY
m = tuple(sorted({{t.implementation.split(':')[0] for t in REGISTRY.values()}}))
for s in pathlib.Path({str(SRC)!r}).glob('*.py'):
    for own in (None,) + m:
        job_code(str(s), own, m)
print('torch' in sys.modules, time.perf_counter() - t)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = proc.stdout.split()
    assert out[0] == "False"  # the workflow builds its DAG without torch
    assert float(out[1]) < 2.0, out  # every script x every method (measured: ~0.1 s)


def test_what_a_method_declares_for_the_reports_only_reruns_no_job_of_it(tmp_path):
    """Its colours, role, figures and descriptions (its own and its settings') reach the
    figure and aggregate jobs through their specs or nowhere; the method's own jobs
    follow the rest of its declaration (a setting's default)."""
    base = (
        "from clpipe.methods.traits import MethodTraits\n\n"
        'METHOD = MethodTraits(name="m", implementation="x:Y", description="{d}", palette="{p}",\n'
        '                      settings={{"alpha": {{"type": "number", "default": {a},\n'
        '                                             "description": "{d}"}}}})\n'
    )
    a, b, c = (tmp_path / n for n in ("a.py", "b.py", "c.py"))
    a.write_text(base.format(d="one", p="Blues", a=1))
    b.write_text(base.format(d="two", p="Reds", a=1))
    c.write_text(base.format(d="one", p="Blues", a=2))
    assert fp._parsed(a)[0] == fp._parsed(b)[0] != fp._parsed(c)[0]
