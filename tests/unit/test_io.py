"""Files between steps: atomic writes, safe and checked loading."""

import os

import pytest
import torch

from clpipe import io


def test_a_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"

    def fail(f):
        f.write("half a table")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, fail, mode="w")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, expected):
    """Tables, models and figures are readable as the user's umask says (on a shared
    cluster folder, by their group), as any tool's new files are; mkstemp alone gives 0600."""
    old = os.umask(umask)
    try:
        assert io.current_umask() == umask
        io.atomic_write(tmp_path / "table.csv", lambda f: f.write("a\n1\n"), mode="w")
        io.save_rows(tmp_path / "rows.csv", [{"a": 1}])
        io.save(tmp_path / "model.pt", "model", {"step": "test"}, weights=torch.ones(2))
        io.atomic_write(tmp_path / "figures" / "x.png", lambda f: f.write(b"png"))
        kept = io.keep_last_good(tmp_path / "figures" / "x.png", tmp_path)
    finally:
        os.umask(old)
    for name in ("table.csv", "rows.csv", "model.pt", "figures/x.png", "last_good/figures/x.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    assert kept == tmp_path / "last_good" / "figures" / "x.png"


def test_round_trip_and_kind_check(tmp_path):
    p = tmp_path / "imp.pt"
    io.save(p, "importance", {"step": "compute_importance", "task": 2}, fv={"w": torch.ones(3)})
    obj = io.load(p, "importance")
    assert torch.equal(obj["fv"]["w"], torch.ones(3))
    with pytest.raises(
        io.FileFormatError,
        match=r"imp.pt: is a 'clpipe.importance/1' file \(step compute_importance, task 2\), "
        r"expected 'clpipe.model/1'",
    ):
        io.load(p, "model")


def test_truncated_file_is_named(tmp_path):
    p = tmp_path / "model.pt"
    io.save(p, "model", {"step": "train_next_task"}, state_dict={"w": torch.randn(1000)})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        io.FileFormatError,
        match=r"model.pt: cannot be read as a clpipe model file .*rerun the step that makes it "
        r"\(init_model, train_first_task or train_next_task\)",
    ):
        io.load(p, "model")
    imp = tmp_path / "importance.pt"
    imp.write_bytes(b"\x00" * 100)
    with pytest.raises(io.FileFormatError, match=r"importance.pt: .*\(compute_importance\)"):
        io.load(imp, "importance")


def test_a_foreign_file_is_named(tmp_path):
    p = tmp_path / "progress.pt"
    torch.save({"frozen": {}}, p)  # plain data, but not ours
    with pytest.raises(io.FileFormatError, match="progress.pt: not a clpipe file .*made by update_progress"):
        io.load(p, "progress")


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['CLPIPE_PWNED']}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("CLPIPE_PWNED", str(marker))
    p = tmp_path / "model.pt"
    torch.save({"format": "clpipe.model/1", "meta": {}, "payload": Exploit()}, p)
    with pytest.raises(
        io.FileFormatError, match="model.pt: .*refused to load it: it holds Python objects.*GLOBAL posix"
    ) as err:
        io.load(p, "model")
    assert not marker.exists()
    assert "weights_only" not in str(err.value)  # never the advice that would run the code


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_raw_pickle_is_refused_without_torchs_advice_to_trust_it(tmp_path):
    import pickle

    p = tmp_path / "model.pt"
    p.write_bytes(pickle.dumps({"format": "clpipe.model/1", "payload": {1, 2}}, protocol=4))
    with pytest.raises(io.FileFormatError, match="model.pt: .*refused to load it") as err:
        io.load(p, "model")
    assert "weights_only" not in str(err.value) and "trusted source" not in str(err.value)


def test_an_evaluation_cache_is_used_only_for_its_own_evaluation(tmp_path):
    """The rows a training job leaves count only for the same model file and data, the
    same spec and code, the same device kind and (on a CPU) threads."""
    import json

    from clpipe.steps import evaluate as ev

    model, data = tmp_path / "model.pt", tmp_path / "tasks.pt"
    model.write_bytes(b"m" * 3000000)
    data.write_bytes(b"d" * 10)
    spec = {"experiment": "x", "task": 2, "eval": {"batch_size": 100}}
    key = ev.cache_key(str(model), str(data), spec, "code1", "cpu", 2)
    (tmp_path / ev.CACHE).write_text(json.dumps({"format": ev.CACHE_FORMAT, "key": key, "rows": [{"a": 1}]}))
    assert ev.cached_rows(str(model), str(data), spec, "code1", "cpu", 2) == [{"a": 1}]
    assert ev.cached_rows(str(model), str(data), spec, "code1", "auto", 2) == [{"a": 1}]
    assert ev.cached_rows(str(model), str(data), spec, "code2", "cpu", 2) is None  # other code
    assert ev.cached_rows(str(model), str(data), spec, "code1", "cpu", 1) is None  # other threads
    assert ev.cached_rows(str(model), str(data), spec, "code1", "cuda", 2) is None  # other device
    other = dict(spec, eval={"batch_size": 7})
    assert ev.cached_rows(str(model), str(data), other, "code1", "cpu", 2) is None  # other spec
    model.write_bytes(b"m" * 2999999 + b"x")  # another model file of the same size
    assert ev.cached_rows(str(model), str(data), spec, "code1", "cpu", 2) is None
