"""From node evaluations to metrics.csv and the tables over seeds."""

import io
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from clpipe import plan
from clpipe.aggregate import collect_metrics, tables_from_metrics, write_tables
from clpipe.config import validate_config
from clpipe.results_tables import (
    METRICS_COLUMNS,
    PARAMETER_COLUMNS,
    EvaluationFileError,
    parameters_per_task,
    reports_parameters,
)
from conftest import ROOT, SCHEMA


@pytest.fixture
def experiment():
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["seeds"] = [0, 1]
    cfg["experiments"]["tiny"]["arms"] = {
        "finetune": {"method": "finetune"},
        "mag_b20": {"method": "mag", "freeze": [20]},
        "mag_b20_c50": {"start_from": "mag_b20", "freeze": [50]},
    }
    return validate_config(cfg, str(SCHEMA))["tiny"]


def fake_accuracy(seed, owner, trained, evaluated):
    """A distinct, known accuracy per (seed, node, task)."""
    return round(
        0.5 + 0.1 * trained + 0.01 * evaluated + 0.001 * seed + (0.0001 if owner == "finetune" else 0), 6
    )


def write_evaluations(tmp_path, exp):
    layout = plan.Layout(str(tmp_path))
    files = plan.evaluation_files(layout, exp)
    for path in files:
        parts = path.split("/")
        seed, owner, task = int(parts[-4][4:]), parts[-3], int(parts[-2][4:])
        rows = [
            {
                "experiment": "tiny",
                "seed": seed,
                "owner": owner,
                "trained_task": task,
                "eval_task": j,
                "dataset": "mnist",
                "classes": "",
                "accuracy": fake_accuracy(seed, owner, task, j),
                "loss": 0.1,
                "n": 10,
                "spec_hash": "s",
                "config_hash": "c",
                "git_commit": "g",
                "device": "cpu",
                "torch": "t",
            }
            for j in (1, 2, 3)
        ]
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(tmp_path / path, index=False)
    return [str(tmp_path / f) for f in files]


def test_every_node_is_evaluated_once_and_shared_nodes_feed_every_arm(tmp_path, experiment):
    files = plan.evaluation_files(plan.Layout("r"), experiment)
    # per seed: init, task 1 (shared), finetune 2 and 3, mag_b20 2, mag_b20_c50 3
    assert len(files) == len(set(files)) == 2 * 6


def write_histories(tmp_path, exp):
    layout = plan.Layout(str(tmp_path))
    files = plan.history_files(layout, exp)
    for path in files:
        parts = path.split("/")
        seed, owner, task = int(parts[-4][4:]), parts[-3], int(parts[-2][4:])
        rows = [
            {"epoch": e, "step": 10 * e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "val_loss": 1.0,
             "val_accuracy": 0.5, "images_per_second": 100.0, "seconds": 1.0,
             "experiment": "tiny", "seed": seed, "arm": owner, "task": task}
            for e in (1, 2)
        ]  # fmt: skip
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(tmp_path / path, index=False)
    return [str(tmp_path / f) for f in files]


def test_tables(tmp_path, experiment):
    evals = write_evaluations(tmp_path, experiment)
    histories = write_histories(tmp_path, experiment)
    out = {
        k: str(tmp_path / f"{k}.out") for k in ("metrics", "summary", "matrix", "training", "md", "sh", "mh")
    }
    write_tables(
        evals,
        histories,
        plan.aggregate_spec(experiment),
        out["metrics"],
        out["summary"],
        out["matrix"],
        out["training"],
        out["md"],
        out["sh"],
        out["mh"],
    )
    t = pd.read_csv(out["training"])
    # trained models: task 1 (shared, once), finetune 2 and 3, mag_b20 2, mag_b20_c50 3; 2 seeds, 2 epochs
    assert len(t) == 2 * 5 * 2
    assert list(t.columns[:5]) == ["experiment", "seed", "arm", "task", "epoch"]
    assert t["arm"].iloc[0] == "scratch" and set(t["arm"]) == {
        "scratch",
        "finetune",
        "mag_b20",
        "mag_b20_c50",
    }
    m = pd.read_csv(out["metrics"])
    # rows: arm x seed x (trained 0..T) x 3 eval tasks
    assert len(m) == 2 * 3 * (4 + 3 + 4)
    c50 = m[(m.arm == "mag_b20_c50") & (m.seed == 1)].set_index(["trained_task", "eval_task"])["accuracy"]
    assert c50[(2, 1)] == fake_accuracy(1, "mag_b20", 2, 1)  # its task B is mag_b20's
    assert c50[(3, 3)] == fake_accuracy(1, "mag_b20_c50", 3, 3)
    s = pd.read_csv(out["summary"]).set_index("arm")
    assert s.loc["mag_b20", "tasks_trained"] == 2 and s.loc["mag_b20", "n_seeds"] == 2
    # ACC of finetune per seed: mean over j of 0.5 + 0.3 + 0.01 j + 0.001 seed + 0.0001
    accs = [0.5 + 0.3 + 0.02 + 0.001 * seed + 0.0001 for seed in (0, 1)]
    assert s.loc["finetune", "acc_mean"] == pytest.approx(sum(accs) / 2)
    assert s.loc["finetune", "acc_sd"] == pytest.approx(math.sqrt(2 * 0.0005**2))
    assert s.loc["finetune", "acc_sem"] == pytest.approx(s.loc["finetune", "acc_sd"] / math.sqrt(2))
    # BWT: R[3][1] - R[1][1] (task 1 is the shared scratch node) and R[3][2] - R[2][2]
    assert s.loc["finetune", "bwt_mean"] == pytest.approx(((0.2 + 0.0001) + 0.1) / 2)
    mx = pd.read_csv(out["matrix"])
    final = mx[mx.final & (mx.arm == "mag_b20")]
    assert sorted(final.eval_task) == [1, 2, 3] and set(final.trained_task) == {2}
    text = open(out["md"]).read()
    assert "| mag_b20 | mag | 2 |" in text and "| – |" in text  # task 3 untrained by mag_b20
    page = open(out["sh"]).read()
    assert page.split("</table>")[0].count("<tr") == 1 + 3 and "<td>mag_b20</td>" in page
    assert "<h3>Paired differences against finetune</h3>" in page  # the default reference
    assert open(out["mh"]).read().count("<h3>") == 3


def test_a_missing_evaluation_is_an_error(tmp_path, experiment):
    evals = write_evaluations(tmp_path, experiment)
    out = [str(tmp_path / f"o{i}") for i in range(7)]
    with pytest.raises(EvaluationFileError, match="arm .mag_b20_c50.: found evaluations of 7 models"):
        write_tables(
            [e for e in evals if "mag_b20_c50" not in e or "seed1" not in e],
            [],
            plan.aggregate_spec(experiment),
            *out,
        )


def test_a_joint_arm_has_the_init_and_the_last_row_only():
    from clpipe.metrics import all_metrics
    from clpipe.results_tables import accuracy_matrix

    rows = pd.DataFrame(
        [
            {"trained_task": i, "eval_task": j, "accuracy": acc}
            for i, accs in ((0, [0.5, 0.4, 0.6]), (3, [0.9, 0.8, 1.0]))
            for j, acc in enumerate(accs, start=1)
        ]
    )
    R = accuracy_matrix(rows)
    assert R.shape == (4, 3) and np.isnan(R[1:3]).all()
    m = all_metrics(R)
    assert m["acc"] == pytest.approx(0.9)
    assert np.isnan(m["bwt"]) and np.isnan(m["fwt"]) and np.isnan(m["forgetting"])
    with pytest.raises(ValueError, match="lack the random init"):
        accuracy_matrix(rows[rows["trained_task"] == 3])


# --- per task: accuracy and parameters of a growing network -----------------------------


def growing_metrics(added_by_seed=None):
    """metrics.csv rows of a two-task growing experiment: arm "g" (shares task 1), 2 seeds.

    Task 1: 100 parameters; task 2 adds ``added_by_seed[seed]`` (default 50 for both)."""
    added_by_seed = added_by_seed or {0: 50, 1: 50}
    rows = []
    for seed in (0, 1):
        for trained in (0, 1, 2):
            total = {0: 100, 1: 100, 2: 100 + added_by_seed[seed]}[trained]
            added = {0: math.nan, 1: 100, 2: added_by_seed[seed]}[trained]
            in_use = {0: math.nan, 1: 100, 2: 60 + seed}[trained]
            for j in (1, 2):
                rows.append(
                    {"experiment": "gx", "method": "growing", "method_type": "growing", "arm": "g",
                     "seed": seed, "trained_task": trained, "eval_task": j,
                     "accuracy": math.nan if j > max(trained, 1) else 0.5 + 0.1 * trained + 0.01 * seed,
                     "loss": 0.1, "n": 10, "owner": "g", "dataset": "mnist", "classes": "", "spec_hash": "s",
                     "config_hash": "c", "git_commit": "g", "device": "cpu", "torch": "t",
                     "parameters_total": total, "parameters_added": added, "parameters_in_use": in_use}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_metrics_carry_the_models_parameters_when_the_evaluations_have_them(tmp_path, experiment):
    evals = write_evaluations(tmp_path, experiment)
    old = collect_metrics(plan.aggregate_spec(experiment), evals)
    assert list(old.columns) == METRICS_COLUMNS  # evaluations without them: as before
    for path in evals[: len(evals) // 2]:  # newer evaluations among older ones
        frame = pd.read_csv(path)
        frame.assign(parameters_total=1234, parameters_added=math.nan, parameters_in_use=math.nan).to_csv(
            path, index=False
        )
    new = collect_metrics(plan.aggregate_spec(experiment), evals)
    assert list(new.columns) == METRICS_COLUMNS + PARAMETER_COLUMNS
    assert set(new["parameters_total"].dropna()) == {1234} and new["parameters_total"].isna().any()
    assert not reports_parameters(new)  # fixed networks: nothing added per task
    tables = tables_from_metrics(new)
    assert tables == tables_from_metrics(old)  # and no parameter table
    assert "Parameters per task" not in tables["summary.md"]


def test_the_parameters_per_task_table_of_a_growing_network():
    metrics = growing_metrics()
    assert reports_parameters(metrics)
    table = parameters_per_task(metrics).set_index("task")
    assert list(table.index) == [1, 2] and set(table["n_seeds"]) == {2}
    assert table.loc[2, "accuracy_mean"] == pytest.approx(0.705)  # R[2][2] over the seeds
    assert table.loc[2, "accuracy_sd"] == pytest.approx(math.sqrt(2 * 0.005**2))
    assert (table.loc[1, "parameters_added_mean"], table.loc[2, "parameters_added_mean"]) == (100, 50)
    assert table.loc[2, "parameters_added_sd"] == 0 and table.loc[2, "parameters_total_mean"] == 150
    assert table.loc[2, "parameters_in_use_mean"] == 60.5
    md = tables_from_metrics(metrics)["summary.md"]
    part = md.split("## Parameters per task\n\n")[1]
    lines = part.splitlines()
    assert lines[0] == (
        "| arm | task | accuracy after the task | parameters added | parameters in use | parameters total |"
    )
    # mean ± SEM (sd / sqrt(2) for 2 seeds)
    assert lines[2] == "| g | 1 | 0.605 ± 0.005 | 100 | 100 | 100 |"
    assert lines[3] == "| g | 2 | 0.705 ± 0.005 | 50 | 60 ± 0.5 | 150 |"
    html = tables_from_metrics(metrics)["summary.html"]
    assert "<h3>Parameters per task</h3>" in html and "<td>60 ± 0.5</td>" in html
    # a network that decides its own growth may grow for one seed and not for another
    differing = parameters_per_task(growing_metrics({0: 20, 1: 1020})).set_index("task")
    assert differing.loc[2, "parameters_added_mean"] == 520
    assert (
        "| g | 2 | 0.705 ± 0.005 | 520 ± 500 | 60 ± 0.5 | 620 ± 500 |"
        in tables_from_metrics(growing_metrics({0: 20, 1: 1020}))["summary.md"]
    )
    # the summary table above it is what it was without the parameter columns
    plain = tables_from_metrics(metrics.drop(columns=PARAMETER_COLUMNS))
    assert md.startswith(plain["summary.md"]) and "Parameters" not in plain["summary.md"]


# --- paired comparisons and choices on the validation split, on hand-made tables ---------


def _hand_made(arms, seeds=(0, 1, 2, 3, 4), n_tasks=2):
    """metrics.csv rows: arms -> (per-seed test accuracy offset, per-seed validation accuracy)."""
    rows = []
    for arm, (test, val) in arms.items():
        for seed in seeds:
            for trained in range(n_tasks + 1):
                for task in range(1, n_tasks + 1):
                    acc = 0.5 if trained == 0 else 0.6 + 0.1 * (task == trained) + 0.01 * seed + test(seed)
                    rows.append({
                        "experiment": "x", "method": arm.split("_")[0], "method_type": arm.split("_")[0],
                        "arm": arm, "seed": seed, "trained_task": trained, "eval_task": task,
                        "accuracy": acc, "loss": 1.0, "n": 10, "owner": arm, "dataset": "d", "classes": "",
                        "spec_hash": "", "config_hash": "", "git_commit": "", "device": "cpu", "torch": "",
                        "val_accuracy": val(seed), "val_loss": 1.0, "val_n": 5,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_equal_arms_differ_by_an_interval_that_covers_zero():
    from clpipe.comparisons import paired_comparisons

    m = _hand_made({"finetune": (lambda s: 0.0, lambda s: 0.5), "ewc_a": (lambda s: 0.0, lambda s: 0.5)})
    row = paired_comparisons(m, ["finetune"]).iloc[0]
    assert row["acc_mean"] == 0 and row["acc_low"] <= 0 <= row["acc_high"] and row["acc_p_holm"] == 1.0
    assert row["acc_n"] == 5


def test_a_constant_shift_is_reported_as_exactly_that_shift():
    from clpipe.comparisons import paired_comparisons

    m = _hand_made({"finetune": (lambda s: 0.0, lambda s: 0.5), "ewc_a": (lambda s: 0.05, lambda s: 0.5)})
    row = paired_comparisons(m, ["finetune"]).iloc[0]
    assert row["acc_mean"] == pytest.approx(0.05) and row["acc_low"] == pytest.approx(0.05)
    assert row["acc_high"] == pytest.approx(0.05) and row["acc_sem"] == pytest.approx(0, abs=1e-12)
    tables = tables_from_metrics(m, references=["finetune"])
    assert "## Paired differences against finetune" in tables["summary.md"]
    assert "| ewc_a | 2 | +0.050 [+0.050, +0.050] (p 0) |" in tables["summary.md"]
    s = pd.read_csv(io.StringIO(tables["summary.csv"])).set_index("arm")
    assert s.loc["ewc_a", "acc_vs_finetune_diff"] == pytest.approx(0.05)
    assert s.loc["ewc_a", "acc_vs_finetune_n"] == 5


def test_an_arm_that_ends_earlier_is_compared_after_its_own_last_task():
    """MAG's task-B arms end after task 2; fine-tuning goes on to task 3. Comparing the
    final models would credit the arm with not having met task 3: the reference is taken
    after task 2 too. A joint arm has no model then, so there is nothing to compare."""
    from clpipe.comparisons import paired_comparisons

    full = _hand_made({"finetune": (lambda s: 0.0, lambda s: 0.5)}, n_tasks=3)
    short = _hand_made({"mag_b": (lambda s: 0.03, lambda s: 0.5)}, n_tasks=3)
    short = short[short["trained_task"] <= 2]
    joint = _hand_made({"joint": (lambda s: 0.2, lambda s: 0.5)}, n_tasks=3)
    joint = joint[joint["trained_task"].isin([0, 3])].assign(method_type="joint")
    m = pd.concat([full, short, joint], ignore_index=True)
    c = paired_comparisons(m, ["finetune", "joint"]).set_index(["reference", "arm"])
    assert c.loc[("finetune", "mag_b"), "after"] == 2
    assert c.loc[("finetune", "mag_b"), "acc_mean"] == pytest.approx(0.03)  # not its final model's gap
    assert c.loc[("finetune", "joint"), "after"] == 3
    assert c.loc[("finetune", "joint"), "acc_mean"] == pytest.approx(0.2)
    assert c.loc[("joint", "mag_b"), "acc_n"] == 0  # joint has no model after task 2
    md = tables_from_metrics(m, references=["finetune", "joint"])["summary.md"]
    assert "| mag_b | 2 | +0.030 [+0.030, +0.030] (p 0) |" in md
    assert "| mag_b | 2 | – | – | – | 0 | – |" in md


def test_an_experiment_of_one_arm_has_nothing_to_compare_and_says_nothing():
    from clpipe.comparisons import paired_comparisons

    m = _hand_made({"finetune": (lambda s: 0.0, lambda s: 0.5)}, seeds=(0,))
    assert paired_comparisons(m, ["finetune"]).empty
    tables = tables_from_metrics(m, references=["finetune"])
    assert "Paired differences" not in tables["summary.md"]
    assert "acc_vs_finetune_diff" not in tables["summary.csv"]


def test_holm_corrects_across_the_arms_compared_with_a_reference():
    from clpipe.comparisons import paired_comparisons

    noise = [0.01, -0.02, 0.015, 0.0, -0.005]
    m = _hand_made({
        "finetune": (lambda s: 0.0, lambda s: 0.5),
        "ewc_a": (lambda s: 0.02 + noise[s], lambda s: 0.5),
        "ewc_b": (lambda s: 0.03 + noise[::-1][s], lambda s: 0.5),
    })  # fmt: skip
    c = paired_comparisons(m, ["finetune"]).set_index("arm")
    raw = sorted(c["acc_p"])
    assert sorted(c["acc_p_holm"]) == pytest.approx([min(1, 2 * raw[0]), max(min(1, 2 * raw[0]), raw[1])])


def test_a_choice_on_validation_ignores_the_test_split():
    from clpipe.comparisons import SELECTED_FROM, select_members, selection_table

    # seeds 0-2 validate best with lambda a, 3-4 with b; test accuracy prefers b everywhere
    m = _hand_made({
        "ewc_a": (lambda s: 0.0, lambda s: 0.9 if s < 3 else 0.7),
        "ewc_b": (lambda s: 0.2, lambda s: 0.8),
    })  # fmt: skip
    groups = {"ewc_selected": ["ewc_a", "ewc_b"]}
    kinds = {"ewc_selected": ("ewc", "ewc")}

    def chosen(metrics):
        picked = select_members(metrics, groups, kinds)
        both = pd.concat([metrics.assign(**{SELECTED_FROM: None}), picked], ignore_index=True)
        return both, list(selection_table(both)["chosen"])

    both, picks = chosen(m)
    assert picks == ["ewc_a", "ewc_a", "ewc_a", "ewc_b", "ewc_b"]
    # the test labels shuffled (every test accuracy changed): the same choices
    shuffled = m.assign(accuracy=m["accuracy"].sample(frac=1.0, random_state=0).to_numpy())
    assert chosen(shuffled)[1] == picks
    selected = both[both["arm"] == "ewc_selected"]
    assert set(selected[SELECTED_FROM]) == {"ewc_a", "ewc_b"}
    # the selected arm's test results are its chosen members' own, seed by seed
    for seed, member in enumerate(picks):
        mine = selected[selected["seed"] == seed]["accuracy"].to_numpy()
        theirs = m[(m["arm"] == member) & (m["seed"] == seed)]["accuracy"].to_numpy()
        assert (mine == theirs).all()
    md = tables_from_metrics(both)["summary.md"]
    assert "## Chosen on validation" in md and "| ewc_selected | 3 | ewc_b | 0.800 |" in md


def test_the_comparisons_figure_draws_each_arm_s_difference_and_interval(tmp_path):
    """The figure reads summary.csv's comparison columns: a constant shift of 0.05 is a
    point at 0.05 with no width; an arm compared after an earlier task says so."""
    from clpipe.figures import comparisons_figure

    full = _hand_made(
        {"finetune": (lambda s: 0.0, lambda s: 0.5), "ewc_a": (lambda s: 0.05, lambda s: 0.5)}, n_tasks=3
    )
    short = _hand_made({"mag_b": (lambda s: 0.03, lambda s: 0.5)}, n_tasks=3)
    m = pd.concat([full, short[short["trained_task"] <= 2]], ignore_index=True)
    summary = pd.read_csv(io.StringIO(tables_from_metrics(m, references=["finetune"])["summary.csv"]))
    arms = [
        {"name": a, "method_type": a.split("_")[0], "palette": "Blues"}
        for a in ("finetune", "ewc_a", "mag_b")
    ]
    fig = comparisons_figure(summary, arms, ["finetune"])
    (ax,) = fig.axes
    points = {c.get_label(): c.lines[0].get_xdata()[0] for c in ax.containers}
    assert points == {"ewc_a": pytest.approx(0.05), "mag_b": pytest.approx(0.03)}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ewc_a", "mag_b (after task 2)"]
    assert ax.get_title() == "against finetune"


def _training_table(seeds):
    """training.csv rows: two epochs of each arm's tasks, per seed."""
    rows = [
        {"experiment": "x", "seed": s, "arm": arm, "task": task, "epoch": e, "train_loss": 1.0 / (e + s + 1),
         "val_accuracy": 0.5 + 0.1 * e + 0.01 * s}
        for s in seeds for arm, task in (("scratch", 1), ("finetune", 2), ("ewc_a", 2)) for e in (1, 2)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _overlapping_titles(fig) -> list[tuple[str, str]]:
    """Pairs of the figure's titles (its own, each panel's) whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in [fig._suptitle, *(ax.title for ax in fig.axes)] if t is not None and t.get_text()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1 :] if box.overlaps(other)]


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2, 3, 4)], ids=["one seed", "five seeds"])
def test_figures_show_a_spread_only_where_there_is_one_and_no_titles_overlap(seeds):
    """With one seed no error bar, band or interval is drawn and no title speaks of one;
    with five, the bars are there and the titles say what they show; no figure draws one
    title over another."""
    import matplotlib.pyplot as plt

    from clpipe import figures

    metrics = _hand_made(
        {"finetune": (lambda s: 0.0, lambda s: 0.5), "ewc_a": (lambda s: 0.02 * s, lambda s: 0.5)},
        seeds=seeds, n_tasks=3,
    )  # fmt: skip
    tables = tables_from_metrics(metrics, references=["finetune"])
    summary = pd.read_csv(io.StringIO(tables["summary.csv"]))
    matrix = pd.read_csv(io.StringIO(tables["accuracy_matrix.csv"]))
    arms = [{"name": a, "method_type": a.split("_")[0], "palette": "Oranges"} for a in ("finetune", "ewc_a")]
    setting = {"axis": "x", "title": "Q?", "caption": "", "points": {"ewc_a": {"2": 10.0, "3": 20.0}}}
    drawn = {
        "methods": figures.methods_figure(summary, arms),
        "comparisons": figures.comparisons_figure(summary, arms, ["finetune"]),
        "forgetting": figures.forgetting_figure(metrics, arms),
        "training": figures.training_figure(_training_table(seeds), arms),
        "matrix": figures.accuracy_matrix_figure(matrix, "ewc_a"),
        "setting": figures.setting_figure(metrics, setting, "finetune"),
    }
    one = len(seeds) == 1
    for name, fig in drawn.items():
        assert _overlapping_titles(fig) == [], name
        title = fig._suptitle.get_text() if fig._suptitle is not None else fig.axes[0].get_title()
        assert ("one seed" in title) == one, (name, title)
        assert ("± sd" in title or "interval" in title) != one or "an interval needs" in title, (name, title)
    from matplotlib.container import ErrorbarContainer

    bars = [c for c in drawn["methods"].axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert (bars == []) == one
    (ax,) = drawn["comparisons"].axes
    assert [len(c.lines[2]) > 0 for c in ax.containers] == [not one]  # the interval's bar
    plt.close("all")


def test_one_seed_tables_describe_no_spread_and_several_seeds_describe_theirs():
    one = tables_from_metrics(
        _hand_made(
            {"finetune": (lambda s: 0.0, lambda s: 0.5), "ewc_a": (lambda s: 0.05, lambda s: 0.5)}, seeds=(0,)
        ),
        references=["finetune"],
    )
    five = tables_from_metrics(
        _hand_made({"finetune": (lambda s: 0.0, lambda s: 0.5), "ewc_a": (lambda s: 0.05, lambda s: 0.5)}),
        references=["finetune"],
    )
    for name in ("summary.md", "summary.html"):
        assert "One seed:" in one[name] and "a spread needs two seeds or more" in one[name], name
        assert "Mean ± SEM" not in one[name] and "confidence interval" not in one[name], name
        assert "Mean ± SEM" in five[name] and "95% confidence interval" in five[name], name
        assert "One seed" not in five[name], name
    assert "One seed (" in one["accuracy_matrix.html"] and "Mean ± SEM" not in one["accuracy_matrix.html"]
    assert "Mean ± SEM over seeds" in five["accuracy_matrix.html"]
