"""One GPU per GPU job on a machine with several, simulated on a CPU (clpipe.gpus).

Processes claim slots the way GPU jobs do; the GPUs are names. Checked: never two jobs
on one slot, every slot used, jobs beyond the slots wait, a SIGKILLed job's slot is
free at once, nothing is claimed under SLURM.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clpipe import gpus
from conftest import ROOT

# A GPU job in miniature: claim a slot, hold it, say when.
JOB = """
import json, os, sys, time
sys.path.insert(0, {src!r})
from clpipe.gpus import claim_slot
start = time.monotonic()
claim = claim_slot({ids!r}, {slots}, directory={folder!r}, poll_s=0.01, timeout_s=60)
got = time.time()
print("CLAIMED", claim.gpu_id, flush=True)
time.sleep({hold})
record = dict(pid=os.getpid(), gpu=claim.gpu_id, index=claim.index, slot=claim.slot,
              start=got, end=time.time(), waited=claim.waited_s)
with open({out!r}, "a") as f:
    f.write(json.dumps(record) + "\\n")
"""


def job(tmp_path, ids, slots, hold, out="jobs.jsonl"):
    code = JOB.format(
        src=str(ROOT / "src"),
        ids=ids,
        slots=slots,
        folder=str(tmp_path / "locks"),
        hold=hold,
        out=str(tmp_path / out),
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_more_jobs_than_slots_never_share_a_slot_and_use_every_slot(tmp_path):
    ids, slots, n_jobs, hold = ["0", "1"], 2, 10, 0.4  # 4 slots, 10 jobs at once
    procs = [job(tmp_path, ids, slots, hold) for _ in range(n_jobs)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    records = [json.loads(line) for line in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    assert len(records) == n_jobs
    by_slot = {}
    for r in records:
        by_slot.setdefault((r["gpu"], r["slot"]), []).append((r["start"], r["end"]))
    assert set(by_slot) == {(g, s) for g in ids for s in range(slots)}, "every slot is used"
    for slot, spans in by_slot.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - 0.005, f"slot {slot} held by two jobs at once: {spans}"
    waited = sorted(r["waited"] for r in records)
    assert waited[-1] > hold * 0.5, "jobs beyond the slots waited for one"
    # what the figures were (pytest -s)
    print(
        f"\n{n_jobs} jobs on {len(ids)} GPUs x {slots} slots: jobs per slot "
        f"{sorted(len(v) for v in by_slot.values())}, longest wait {waited[-1]:.2f} s"
    )


def test_slots_spread_over_gpus_before_sharing_one(tmp_path):
    folder = tmp_path / "locks"
    first = gpus.claim_slot(["0", "1", "2"], 2, directory=folder)
    second = gpus.claim_slot(["0", "1", "2"], 2, directory=folder)
    # a process's own second claim: flock is per open file, so it is refused like another's
    assert (first.index, first.slot) == (0, 0) and (second.index, second.slot) == (1, 0)
    third = gpus.claim_slot(["0", "1", "2"], 2, directory=folder)
    fourth = gpus.claim_slot(["0", "1", "2"], 2, directory=folder)
    assert (third.index, third.slot, fourth.index, fourth.slot) == (2, 0, 0, 1)
    for c in (first, second, third, fourth):
        c.release()
    assert gpus.claim_slot(["0", "1", "2"], 2, directory=folder).describe().startswith("GPU 0 (id 0, slot 0")


def test_a_killed_jobs_slot_is_free_at_once(tmp_path):
    ids = ["GPU-aaaa", "GPU-bbbb"]  # CUDA_VISIBLE_DEVICES may name GPUs by UUID
    holders = [job(tmp_path, ids, 1, 600, out="holders.jsonl") for _ in ids]
    held = {}
    for h in holders:
        word, gpu = h.stdout.readline().split()
        assert word == "CLAIMED"
        held[gpu] = h
    assert set(held) == set(ids)
    with pytest.raises(TimeoutError, match="no free GPU slot among 2"):
        gpus.claim_slot(ids, 1, directory=tmp_path / "locks", poll_s=0.05, timeout_s=0.5)
    os.kill(held["GPU-bbbb"].pid, signal.SIGKILL)
    held["GPU-bbbb"].wait()
    t0 = time.monotonic()
    claim = gpus.claim_slot(ids, 1, directory=tmp_path / "locks", poll_s=0.05, timeout_s=10)
    assert claim.gpu_id == "GPU-bbbb" and time.monotonic() - t0 < 1.0
    held["GPU-aaaa"].kill()
    held["GPU-aaaa"].wait()


def test_visible_gpus_follow_cuda_visible_devices():
    assert gpus.visible_gpus(4, environ={}) == ["0", "1", "2", "3"]
    assert gpus.visible_gpus(4, environ={"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert gpus.visible_gpus(None, environ={"CUDA_VISIBLE_DEVICES": "GPU-1a,GPU-2b"}) == ["GPU-1a", "GPU-2b"]
    assert gpus.visible_gpus(2, environ={"CUDA_VISIBLE_DEVICES": ""}) == []  # every GPU hidden
    assert gpus.visible_gpus(3, environ={"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]  # CUDA stops at -1


def test_a_machine_shows_a_gpu_by_its_drivers_devices_unless_cuda_hides_them_all(tmp_path):
    nvidia, kfd = tmp_path / "nvidia" / "gpus", tmp_path / "kfd"
    nvidia.mkdir(parents=True)
    paths = (str(nvidia), str(kfd))
    assert not gpus.machine_has_gpu({}, paths)  # the driver's folder, with no GPU in it
    (nvidia / "0000:01:00.0").mkdir()
    assert gpus.machine_has_gpu({}, paths)
    assert not gpus.machine_has_gpu({"CUDA_VISIBLE_DEVICES": ""}, paths)
    assert gpus.machine_has_gpu({"CUDA_VISIBLE_DEVICES": "0"}, paths)
    (nvidia / "0000:01:00.0").rmdir()
    kfd.write_text("")  # ROCm's device file
    assert gpus.machine_has_gpu({}, paths)
    assert not gpus.machine_has_gpu({}, (str(tmp_path / "none"),))


def test_no_claim_under_slurm_and_no_claim_without_gpus(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert gpus.claim_for_this_process(4, 1) is None  # the allocation is used as it is
    with pytest.raises(ValueError, match="no GPU to claim"):
        gpus.claim_slot([], 1)
    with pytest.raises(ValueError, match="gpu_slots_per_device"):
        gpus.claim_slot(["0"], 0)


def test_a_job_that_asked_for_no_gpu_runs_on_the_cpu(monkeypatch):
    """The device follows the job's gpu resource: no GPU asked, no GPU used or claimed."""
    from types import SimpleNamespace

    from clpipe.runtime import runtime_for

    job = SimpleNamespace(
        config={"device": "auto", "deterministic": True},
        resources=SimpleNamespace(runtime=10),
        threads=1,
        rule="init_model",
    )
    runtime = runtime_for(job)
    assert runtime.device.type == "cpu" and runtime.gpu is None and runtime.threads == 1
