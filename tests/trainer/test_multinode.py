"""Several machines for real: two torchrun agents on loopback (``--nnodes 2 --nproc-per-node
1``, c10d rendezvous on 127.0.0.1, gloo) form one world of 2 and write one complete run
directory; ``trainer stop`` ends such a job as a whole; a multi-node request that comes up
as a world of one says so."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TINY_EPOCHS, TINY_TRAIN_ARGS, run_cli
from tests.support import check_run_directory, read_events
from trainer import cluster
from trainer.background import process_alive, torchrun_agent

# the tiny run's model and data with the default recipe (small stem, in-memory cache); the two
# agents train the tiny run's own arguments (TINY_TRAIN_ARGS) to match the session's one-agent
# run of them (tiny_ddp_run)
MODEL = ("--arch", "resnet18_v2", "--width", "0.25", "--batch-size", "64", "--image-size", "32",
         "--workers", "0", "--seed", "0")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agents(runs: Path, name: str, *extra: str, nodes: int = 2) -> list[subprocess.Popen]:
    """``nodes`` torchrun agents of one job, each a process of its own as on separate machines."""
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes),
           "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
           f"127.0.0.1:{port}", "--rdzv-id", f"epochscope-{name}", "--max-restarts", "0",
           "-m", "trainer", "train", "--runs-dir", str(runs), "--name", name, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
            for _ in range(nodes)]  # fmt: skip


def _finish(agents: list[subprocess.Popen], timeout: float) -> list[str]:
    outs = []
    try:
        for a in agents:
            out, _ = a.communicate(timeout=timeout)
            outs.append(out)
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
    return outs


def _predictions(run: Path) -> dict[int, np.ndarray]:
    out = {}
    for path in sorted((run / "predictions").glob("epoch-*.npz")):
        with np.load(path) as z:
            out[int(path.stem.split("-")[1])] = z["top5"].copy()
    return out


@pytest.mark.slow
def test_two_torchrun_agents_make_one_world_and_one_run(demo_data, runs_dir, tiny_ddp_run):
    agents = _agents(runs_dir, "two-nodes", "--data", str(demo_data), *TINY_TRAIN_ARGS)
    outs = _finish(agents, timeout=600)
    for a, out in zip(agents, outs, strict=True):
        assert a.returncode == 0, out[-3000:]
    print("\n--- agent 1\n" + outs[0][-1500:] + "\n--- agent 2\n" + outs[1][-1500:])
    run = runs_dir / "two-nodes"
    counts = check_run_directory(run, TINY_EPOCHS)
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["data"]["loader"] == "memory-cache"
    assert info["hparams"]["stem"] == "small"
    events = read_events(run)
    starts = [e for e in events if e["kind"] == "status" and e["state"] == "started"]
    assert len(starts) == 1  # one writer: rank 0 of the two agents
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == list(range(1, TINY_EPOCHS + 1))
    # exactly one agent's worker was rank 0 and wrote; the run says so once
    assert sum("writing " in out for out in outs) == 1

    # the same job from one agent with two processes: the same world, the same predictions
    one = tiny_ddp_run
    assert check_run_directory(one, TINY_EPOCHS) == counts
    ours, theirs = _predictions(run), _predictions(one)
    assert sorted(ours) == list(range(1, TINY_EPOCHS + 1))
    for epoch in ours:
        np.testing.assert_array_equal(ours[epoch], theirs[epoch])
    a = [e for e in read_events(run) if e["kind"] == "epoch"]
    b = [e for e in read_events(one) if e["kind"] == "epoch"]
    assert [e["val_top1"] for e in a] == [e["val_top1"] for e in b]
    assert [e["train_loss"] for e in a] == pytest.approx([e["train_loss"] for e in b], 1e-6)


@pytest.mark.slow
def test_stop_ends_a_two_agent_job_as_a_whole(demo_data, runs_dir):
    agents = _agents(runs_dir, "two-stop", "--data", str(demo_data), *MODEL, "--epochs", "200",
                     "--recipe", "seed")  # fmt: skip
    run = runs_dir / "two-stop"
    try:
        deadline = time.monotonic() + 300
        while not any(e["kind"] == "epoch" for e in _events(run)):
            assert time.monotonic() < deadline, "no epoch within 300 s"
            assert all(a.poll() is None for a in agents), _finish(agents, 5)
            time.sleep(0.5)
        rank0 = int((run / "run.lock").read_text().split()[0])
        assert torchrun_agent(rank0) in {a.pid for a in agents}
        stop = run_cli("trainer", "stop", "two-stop", "--runs-dir", str(runs_dir))
        assert "torchrun agent" in stop.stdout and "status stopped" in stop.stdout
        t0 = time.monotonic()
        for a in agents:  # both agents end: the stopped one and, its peer gone, the other
            a.wait(timeout=120)
        print(f"stop: {stop.stdout.strip()}; both agents gone {time.monotonic() - t0:.1f} s "
              f"later (exit codes {[a.returncode for a in agents]})")  # fmt: skip
        assert not process_alive(rank0)
    finally:
        _finish(agents, 1)
    states = [e["state"] for e in _events(run) if e["kind"] == "status"]
    assert states[-1] == "stopped", states


def _events(run: Path) -> list[dict]:
    try:
        return read_events(run)
    except (FileNotFoundError, AssertionError, ValueError):
        return []


# --- a multi-node request that came up alone ---------------------------------------------------
@pytest.mark.parametrize("env,asked", [
    ({}, 1), ({"SLURM_JOB_NUM_NODES": "4"}, 4), ({"PET_NNODES": "1:2"}, 2),
    ({"EPOCHSCOPE_NNODES": "3"}, 3), ({"SLURM_NNODES": "x"}, 1),
])  # fmt: skip
def test_nodes_requested(env, asked):
    assert cluster.nodes_requested(env) == asked


def test_alone_warning_only_for_several_nodes_and_a_world_of_one():
    assert cluster.alone_warning(1, {}) is None
    assert cluster.alone_warning(8, {"SLURM_JOB_NUM_NODES": "2"}) is None
    text = cluster.alone_warning(1, {"SLURM_JOB_NUM_NODES": "2"})
    assert text and "2 nodes were asked for" in text and "torchrun --nnodes" in text


@pytest.mark.slow
def test_trainer_warns_when_several_nodes_come_up_alone(demo_data, runs_dir):
    out = run_cli("trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs_dir),
                  "--name", "alone", *MODEL, "--epochs", "1", "--recipe", "seed",
                  env={"SLURM_JOB_NUM_NODES": "2"}).stdout  # fmt: skip
    assert "warning: 2 nodes were asked for but this trainer is a world of 1 process" in out
