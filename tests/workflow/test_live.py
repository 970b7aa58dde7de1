"""The live view (logging.tensorboard): event files TensorBoard's own reader reads."""

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from clpipe.live import EVENT_FILE, LiveLog, run_dir
from conftest import planned_jobs, write_config


def read_run(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_scalars_and_text_read_back(tmp_path):
    with LiveLog(tmp_path / "run") as view:
        view.epoch({"step": 19, "train_loss": 0.5, "val_accuracy": 0.875, "lr": 1e-3, "seconds": 2.0})
        view.epoch({"step": 38, "train_loss": 0.25, "val_accuracy": 0.9375, "val_loss": float("nan")})
        view.text("summary", "| arm | ACC |\n|---|---|\n| finetune | 0.5 |")
    events = read_run(tmp_path / "run")
    assert sorted(events.Tags()["scalars"]) == ["lr", "train_loss", "val_accuracy"]  # NaN left out
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(19, 0.5), (38, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("val_accuracy")] == [(19, 0.875), (38, 0.9375)]
    (text,) = events.Tensors("summary/text_summary")  # the writer names text tags so
    assert text.tensor_proto.string_val == [b"| arm | ACC |\n|---|---|\n| finetune | 0.5 |"]


def test_a_job_run_again_starts_its_run_afresh(tmp_path):
    for loss in (0.5, 0.25):
        with LiveLog(tmp_path / "run") as view:
            view.epoch({"step": 1, "train_loss": loss})
    assert len(list((tmp_path / "run").glob(f"{EVENT_FILE}.*"))) == 1
    assert [e.value for e in read_run(tmp_path / "run").Scalars("train_loss")] == [0.25]


def test_a_run_is_named_by_its_jobs_path(tmp_path):
    exp = tmp_path / "results" / "split"
    assert run_dir(exp / "seed3/mag_b20/task2/model.pt") == exp / "tensorboard/seed3/mag_b20/task2"
    assert run_dir(exp / "seed0/scratch/task1/model.pt") == exp / "tensorboard/seed0/scratch/task1"
    assert run_dir(exp / "metrics.csv") == exp / "tensorboard/tables"


@pytest.mark.slow
def test_every_training_job_and_the_tables_are_in_the_live_view(tiny_run):
    work, cfg = tiny_run
    exp = work / "results" / "tiny"
    histories = sorted(exp.glob("seed*/*/task*/history.csv"))
    assert len(histories) > 5
    for history in histories:
        rows = pd.read_csv(history)
        events = read_run(run_dir(history))
        for tag in ("train_loss", "val_accuracy", "lr", "images_per_second"):
            logged = [(e.step, e.value) for e in events.Scalars(tag)]
            assert logged == [
                (s, pytest.approx(v, rel=1e-6)) for s, v in zip(rows["step"], rows[tag], strict=True)
            ], f"{history}: {tag}"
    (summary,) = read_run(exp / "tensorboard" / "tables").Tensors("summary/text_summary")
    assert summary.tensor_proto.string_val == [(exp / "summary.md").read_bytes()]


@pytest.mark.slow
def test_turning_the_live_view_off_reruns_nothing(tiny_run, tmp_path):
    work, cfg = tiny_run
    import yaml

    off = write_config(tmp_path / "off.yaml", cfg, logging={"tensorboard": False})
    assert yaml.safe_load(off.read_text())["logging"] == {"tensorboard": False}
    assert planned_jobs(work, off) == {}
