"""Background training: ``train --background`` detaches a trainer; ``python -m trainer stop``
ends one cleanly (SIGTERM -> status ``stopped``), a torchrun job through its agent."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from epochscope.layout import LOCK, METRICS, PID, TRAIN_LOG
from epochscope.lock import lock_is_held, process_alive, read_pid
from epochscope.reader import MetricsLog, last_status
from epochscope.storage.writing import writing_place
from epochscope.writer import atomic_write

LOG = TRAIN_LOG
STARTUP_GRACE_S = (
    3.0  # an immediate failure (bad data folder) is reported here, not only in the log
)


def launch(argv: Sequence[str], run_dir: Path) -> int:
    """Start ``train`` without ``--background`` as a detached process logging to train.log."""
    log_path = run_dir / LOG
    if lock_is_held(run_dir / LOCK):
        pid = read_pid(run_dir / PID) or read_pid(run_dir / LOCK)
        print(f"a trainer is already running for {run_dir.name} (pid {pid}); log: {log_path}")
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    child = [sys.executable, "-m", "trainer", "train", *(a for a in argv if a != "--background")]
    with open(log_path, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(child)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            child,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell (and its Ctrl-C) that started it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    atomic_write(run_dir / PID, f"{proc.pid}\n".encode())
    try:
        code = proc.wait(timeout=STARTUP_GRACE_S)
    except subprocess.TimeoutExpired:
        print(f"training {run_dir.name} in the background (pid {proc.pid})")
        print(f"  log:  {log_path}")
        print(f"  stop: python -m trainer stop {run_dir.name} --runs-dir {run_dir.parent}")
        return 0
    if read_pid(run_dir / PID) == proc.pid:
        (run_dir / PID).unlink(missing_ok=True)
    tail = log_path.read_text(errors="replace").splitlines()[-5:]
    stream = sys.stdout if code == 0 else sys.stderr
    print("\n".join(line for line in tail if not line.startswith("--- ")), file=stream)
    return code


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer stop",
        description="Stop a run's trainer cleanly: SIGTERM, then wait for status 'stopped'.",
    )
    p.add_argument("name", help="run name")
    p.add_argument("--runs-dir", default="runs", metavar="RUNS", help="(default: runs)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default: 60)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        run_dir = writing_place(args.runs_dir)[0] / args.name  # a bucket run: its staging copy
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not run_dir.is_dir():
        print(f"error: no run {args.name!r} in {args.runs_dir}", file=sys.stderr)
        return 2
    if not lock_is_held(run_dir / LOCK):
        (run_dir / PID).unlink(missing_ok=True)  # left by a trainer that died
        print(f"no trainer is running for {args.name}")
        return 0
    # the background pid, else the pid the lock holder wrote into run.lock
    pid = read_pid(run_dir / PID) or read_pid(run_dir / LOCK)
    if pid is None:
        print(f"error: the trainer of {args.name} holds run.lock but left no pid", file=sys.stderr)
        return 1
    # under torchrun the job is the agent's: signalling rank 0 alone would leave the other
    # ranks blocked in a collective; the agent forwards SIGTERM to every local worker
    agent = torchrun_agent(pid)
    target = agent or pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while lock_is_held(run_dir / LOCK) or process_alive(pid) or process_alive(target):
        if time.monotonic() > deadline:
            print(f"error: trainer pid {target} still running after {args.timeout:.0f} s",
                  file=sys.stderr)  # fmt: skip
            return 1
        time.sleep(0.2)
    state, epoch = _last_status(run_dir / METRICS)
    what = f"torchrun agent {agent}, rank 0 pid {pid}" if agent else f"pid {pid}"
    print(f"stopped {args.name} ({what}): status {state or 'unknown'} at epoch {epoch}")
    return 0


def torchrun_agent(pid: int) -> int | None:
    """The pid of the torchrun (torch.distributed.run) agent that started trainer ``pid``, or
    None when it was not started by one (Linux /proc; elsewhere None)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{parent}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    names = {os.path.basename(a) for a in argv[:3]}
    if b"torchrun" in names or b"torch.distributed.run" in argv[:4]:
        return parent
    return None


def _last_status(metrics: Path) -> tuple[str | None, int | None]:
    status = last_status(MetricsLog(metrics).refresh())
    return (status.get("state"), status.get("epoch")) if status else (None, None)
