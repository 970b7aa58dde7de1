"""Receipts: what each job made under which params, checked whatever Snakemake's
metadata says (clpipe.receipts), on hand-made files."""

import json
import os
from types import SimpleNamespace

import pytest

from clpipe import io, receipts
from clpipe.errors import InputError

PARAMS = {"spec": {"lambda": 1000, "seeds": [0]}, "code": "abc"}


def made(tmp_path, text="a,b\n1,2\n"):
    """A job's output and its receipt, as the job leaves them."""
    out = tmp_path / "node" / "eval.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    receipt = receipts.receipt_path(tmp_path / "node" / "evaluate.log")
    receipts.write(receipt, "evaluate", PARAMS, [str(out)])
    return out, receipt


def test_a_receipt_sits_beside_the_log_and_records_params_and_outputs(tmp_path):
    out, receipt = made(tmp_path)
    assert receipt == tmp_path / "node" / "evaluate.receipt.json"
    record = json.loads(receipt.read_text())
    assert record["rule"] == "evaluate" and record["params"] == receipts.params_hash(PARAMS)
    assert (
        set(record["outputs"]) == {"eval.csv"} and record["outputs"]["eval.csv"]["size"] == out.stat().st_size
    )
    assert receipts.problems(receipt, PARAMS, [str(out)]) == []


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda out, receipt: receipt.unlink(), "no receipt"),
        (lambda out, receipt: None, "made under other settings or code"),  # params below differ
        (lambda out, receipt: out.write_text("a,b\n1,9\n"), "was changed after its job wrote it"),
    ],
    ids=["no receipt", "other params", "edited output"],
)
def test_a_job_is_out_of_date_without_a_receipt_under_other_params_or_with_an_edited_output(
    tmp_path, change, why
):
    out, receipt = made(tmp_path)
    change(out, receipt)
    params = {**PARAMS, "spec": {"lambda": 1, "seeds": [0]}} if why.startswith("made") else PARAMS
    found = receipts.problems(receipt, params, [str(out)])
    assert len(found) == 1 and why in found[0], found


def test_a_copy_or_a_touch_keeps_the_content_and_is_not_an_edit(tmp_path):
    out, receipt = made(tmp_path)
    os.utime(out, ns=(1, 1))  # another time, the same bytes: hashed, found the same
    assert receipts.problems(receipt, PARAMS, [str(out)]) == []
    receipts.check_file(out)


def test_a_job_not_run_yet_has_nothing_to_say(tmp_path):
    assert receipts.problems(tmp_path / "x.receipt.json", PARAMS, [str(tmp_path / "none.csv")]) == []


def test_a_reader_refuses_a_file_edited_since_its_job_wrote_it(tmp_path):
    out, _ = made(tmp_path)
    out.write_text("a,b\n1,3\n")
    with pytest.raises(
        receipts.EditedFileError, match=r"eval.csv: its content is not what evaluate wrote"
    ) as err:
        receipts.check_file(out)
    assert isinstance(err.value, InputError)
    (tmp_path / "plain.csv").write_text("no receipt lists it\n")
    receipts.check_file(tmp_path / "plain.csv")  # an older version's file: taken as it is


def test_loading_a_pipeline_file_checks_it_against_its_receipt(tmp_path):
    import torch

    path = tmp_path / "e" / "seed0" / "ewc" / "task2" / "ewc" / "importance.pt"
    io.save(path, "importance", {"step": "compute_importance"}, fisher=torch.ones(3))
    receipts.write(
        receipts.receipt_path(path.parent / "compute_importance.log"),
        "compute_importance",
        PARAMS,
        [str(path)],
    )
    assert torch.equal(io.load(path, "importance")["fisher"], torch.ones(3))
    obj = torch.load(path, weights_only=True)
    obj["fisher"] = torch.zeros(3)  # a zeroed Fisher, the file's own metadata kept
    torch.save(obj, path)
    with pytest.raises(
        receipts.EditedFileError, match="importance.pt: its content is not what compute_importance"
    ):
        io.load(path, "importance")


def fake_rule(tmp_path, params):
    return SimpleNamespace(
        name="evaluate",
        output=[str(tmp_path / "{node}" / "eval.csv")],
        log=[str(tmp_path / "{node}" / "evaluate.log")],
        params=SimpleNamespace(items=lambda: params.items()),
    )


def test_a_job_is_checked_with_its_params_as_snakemake_gives_them_and_touch_accepts_it(tmp_path):
    out, receipt = made(tmp_path)
    wildcards = {"node": "node"}

    def expand(pattern):
        return pattern.format(**wildcards)

    changed = {"spec": lambda w: {"lambda": 1, "seeds": [0]}, "code": "abc"}  # a function of the wildcards
    why, outputs = receipts.check_job(fake_rule(tmp_path, changed), wildcards, expand)
    assert outputs == [str(out)] and "other settings" in why[0]
    assert (
        receipts.check_job(fake_rule(tmp_path, changed), wildcards, expand, accept=True, write_receipt=False)[
            0
        ]
        == []
    )
    assert (
        "other settings" in receipts.check_job(fake_rule(tmp_path, changed), wildcards, expand)[0][0]
    )  # a dry run wrote nothing
    receipts.check_job(fake_rule(tmp_path, changed), wildcards, expand, accept=True)
    assert receipts.check_job(fake_rule(tmp_path, changed), wildcards, expand) == ([], [str(out)])


def test_a_job_is_out_of_date_when_an_input_it_read_is_gone_or_another(tmp_path):
    model = tmp_path / "node" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    receipts.write(receipts.receipt_path(model.parent / "train.log"), "train_next_task", PARAMS, [str(model)])
    out = tmp_path / "node" / "eval.csv"
    out.write_text("a\n1\n")
    receipt = receipts.receipt_path(model.parent / "evaluate.log")
    receipts.write(receipt, "evaluate", PARAMS, [str(out)], inputs=[str(model)])
    assert json.loads(receipt.read_text())["inputs"] == {
        "model.pt": receipts.sha256(model)
    }  # from its maker's
    assert receipts.problems(receipt, PARAMS, [str(out)]) == []
    model.write_bytes(b"other weights")
    assert receipts.problems(receipt, PARAMS, [str(out)]) == [
        f"its input {model} is not the one it was made from"
    ]
    model.unlink()  # a failed retraining removed it: the evaluation is of a model that is gone
    assert receipts.problems(receipt, PARAMS, [str(out)]) == [f"its input {model} is gone"]
