"""Disk faults and a lost rank: a full disk during a write (EPOCHSCOPE_FAULT=enospc-...), for
each engine, and a two-process torchrun job losing rank 1 to SIGKILL. Each ends in a clear
state, keeps the last good checkpoint and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from epochscope.reader import MetricsLog, epoch_table, lock_held, run_state
from tests.conftest import ENGINE_ARGS, ENGINES, REPO
from tests.support import (
    CHECKPOINT_FILES,
    events_of,
    free_port,
    load_every_file,
    temp_files,
    wait_for,
)

pytestmark = pytest.mark.faults

ARGS = (
    "--arch", "resnet18_v2", "--width", "0.25", "--epochs", "2", "--batch-size", "64",
    "--image-size", "32", "--lr", "0.1", "--workers", "0", "--seed", "0", "--log-interval", "2",
)  # fmt: skip


def nth_write(engine: str, epoch: int, file: int) -> int:
    """The count of the atomic write of an epoch's ``file``-th file (0: predictions, 1:
    embeddings, 2: model, 3: the checkpoint's first): run.json, classes.tsv, val_index.tsv come
    first, then per epoch the two npz, onnx and the checkpoint's files."""
    per_epoch = 3 + len(CHECKPOINT_FILES[engine])
    return 3 + per_epoch * (epoch - 1) + file + 1


def train(data: Path, runs: Path, name: str, *extra: str, fault: str | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("EPOCHSCOPE_FAULT", None)
    if fault:
        env["EPOCHSCOPE_FAULT"] = fault
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--runs-dir", str(runs),
           "--name", name, *ARGS, *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def finished_after_resume(data: Path, runs: Path, name: str, *extra: str, epochs: int = 2):
    proc = train(data, runs, name, *extra, "--resume", "--epochs", str(epochs))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = runs / name
    log = MetricsLog(run / "metrics.jsonl")
    log.refresh()
    assert list(epoch_table(log.events)) == list(range(1, epochs + 1))
    assert run_state(run, log.events) == "finished"
    assert not temp_files(run)
    load_every_file(run)


@pytest.mark.parametrize("engine", ENGINES)
def test_full_disk_at_a_checkpoint_fails_clearly_and_resumes(
    engine: str, demo_data: Path, tmp_path: Path
):
    fault = f"enospc-after:{nth_write(engine, 2, 3)}"
    proc = train(demo_data, tmp_path, "full", *ENGINE_ARGS[engine], fault=fault)
    run = tmp_path / "full"
    assert proc.returncode == 1
    assert "No space left on device" in proc.stderr and "error: training failed" in proc.stderr
    status = [e for e in events_of(run) if e["kind"] == "status"][-1]
    assert status["state"] == "failed" and status["epoch"] == 2
    assert "No space left on device" in status["error"]
    assert run_state(run, events_of(run)) == "failed" and not lock_held(run)
    # the last good checkpoint is kept and loads; the failed one never appeared
    kept = sorted(f"epoch-0001{s}" for s in CHECKPOINT_FILES[engine])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == kept
    assert not temp_files(run)
    load_every_file(run)
    finished_after_resume(demo_data, tmp_path, "full", *ENGINE_ARGS[engine])  # "space is back"


@pytest.mark.parametrize("engine", ENGINES)
def test_full_disk_for_events_too_says_so_on_stderr(engine: str, demo_data: Path, tmp_path: Path):
    fault = f"enospc-all-after:{nth_write(engine, 2, 0)}"
    proc = train(demo_data, tmp_path, "nolog", *ENGINE_ARGS[engine], fault=fault)
    run = tmp_path / "nolog"
    assert proc.returncode == 1
    assert "could not write the 'failed' status" in proc.stderr
    assert "No space left on device" in proc.stderr
    # no status event could be written: the dashboard sees a dead trainer, shown as crashed
    assert run_state(run, events_of(run)) == "crashed"
    assert not list((run / "predictions").glob("epoch-0002.npz"))
    load_every_file(run)
    finished_after_resume(demo_data, tmp_path, "nolog", *ENGINE_ARGS[engine])


def _rank_pid(rank: int, name: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and name.encode() in cmd and b"trainer" in cmd:
            return int(entry.name)
    return None


def test_losing_one_rank_ends_the_job_cleanly(demo_data: Path, tmp_path: Path):
    name = "ddp-lost"
    run = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("EPOCHSCOPE_FAULT", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(free_port()), "-m", "trainer", "train", "--data", str(demo_data),
           "--runs-dir", str(tmp_path), "--name", name, *ARGS]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: any(e["kind"] == "step" and e["epoch"] == 2 for e in events_of(run))
                 or proc.poll() is not None, 240, "a step of epoch 2")  # fmt: skip
        victim = _rank_pid(1, name)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        code = proc.wait(timeout=120)  # the bound: a lost rank must not hang the job
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert code != 0, out[-3000:]
    state = run_state(run, events_of(run))
    assert state in ("failed", "stopped"), out[-3000:]
    assert not lock_held(run)
    assert (run / "checkpoints" / "epoch-0001.pt").is_file()
    load_every_file(run)
    print(f"torchrun ended {took:.1f} s after rank 1 was killed; run state {state}")
    finished_after_resume(demo_data, tmp_path, name)  # resumed as a single process
