"""Crash safety: SIGKILL the trainer (each engine) at random moments and inside its file
writes, resume each time, and lose nothing (docs/reliability.md).

Both engines are deterministic on CPU with --workers 0 and a fixed thread count (checked: a run
resumed from a checkpoint repeats an uninterrupted one bit for bit), so the killed run must end
with exactly the reference run's metrics, predictions, weights and optimizer state.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from epochscope.reader import MetricsLog, epoch_table, lock_held, run_state
from tests.conftest import ENGINE_ARGS, ENGINES, REPO
from tests.support import (
    CHECKPOINT_FILES,
    checkpoint_arrays,
    events_of,
    last_checkpoint,
    load_every_file,
    temp_files,
    wait_for,
)
from tests.waits import wait_exit

pytestmark = pytest.mark.faults

# epochs and the least kills per engine: MXNet starts slower (its import), so it gets fewer
PLAN = {"pytorch": (6, 20), "mxnet": (4, 14)}
ARGS = (
    "--arch", "resnet18_v2", "--width", "0.25", "--batch-size", "64", "--image-size", "32",
    "--lr", "0.1", "--workers", "0", "--seed", "0", "--log-interval", "2",
)  # fmt: skip
EXIT_BOUND_S = 180  # a trainer that has not reached its fault by now is hung


def file_kinds(engine: str) -> list[str]:
    """Every file an epoch writes, in order: the places a kill inside a write can land."""
    kinds = [
        "predictions/epoch-{:04d}.npz",
        "embeddings/epoch-{:04d}.npz",
        "models/epoch-{:04d}.onnx",
    ]
    return kinds + [f"checkpoints/epoch-{{:04d}}{s}" for s in CHECKPOINT_FILES[engine]]


def _env(fault: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # fixed threads
    env.pop("EPOCHSCOPE_FAULT", None)
    if fault:
        env["EPOCHSCOPE_FAULT"] = fault
    return env


def launch(
    data: Path, runs: Path, name: str, engine: str, fault: str | None = None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer", "train", *ENGINE_ARGS[engine], "--data", str(data),
           "--runs-dir", str(runs), "--name", name, *ARGS, "--epochs", str(PLAN[engine][0]),
           "--resume-or-start"]  # fmt: skip
    log = (runs / f"{name}.console.log").open("ab")
    return subprocess.Popen(cmd, cwd=REPO, env=_env(fault), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL; True when it was still running (a kill, not a finished run)."""
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return alive and proc.returncode == -signal.SIGKILL


def new_event(run: Path, since: int, **match) -> bool:
    events = events_of(run)[since:]
    return any(all(e.get(k) == v for k, v in match.items()) for e in events)


def check_readable(run: Path) -> None:
    """What a reader finds after any crash: whole files, each epoch once, its files in place."""
    load_every_file(run)
    log = MetricsLog(run / "metrics.jsonl")
    log.refresh()
    table = epoch_table(log.events)
    assert list(table) == list(range(1, len(table) + 1)), list(table)
    for e in table:
        assert (run / "predictions" / f"epoch-{e:04d}.npz").is_file(), e
        assert (run / "models" / f"epoch-{e:04d}.onnx").is_file(), e


class Killer:
    """Kills one run again and again, each time in a different place."""

    def __init__(self, data: Path, runs: Path, name: str, engine: str, rng: random.Random) -> None:
        self.data, self.runs, self.name, self.engine, self.rng = data, runs, name, engine, rng
        self.run = runs / name
        self.kills: list[str] = []

    def _launch(self, fault: str | None = None) -> tuple[subprocess.Popen, int]:
        return launch(self.data, self.runs, self.name, self.engine, fault), len(events_of(self.run))

    def _record(self, proc: subprocess.Popen, what: str) -> None:
        if kill(proc):
            self.kills.append(what)
        check_readable(self.run)

    def fault(self, target: str) -> None:
        """Die between a complete temporary file and its rename."""
        proc, _ = self._launch(f"kill-before-replace:{target}")
        wait_exit(proc, EXIT_BOUND_S, "the trainer")
        assert proc.returncode == -signal.SIGKILL, f"{target}: exit {proc.returncode}"
        folder = (self.run / target).parent
        assert list(folder.glob(f".{Path(target).name}.tmp-*")), f"no temporary file of {target}"
        self.kills.append(f"in the write of {target}")
        check_readable(self.run)

    def at_random(self, seconds: float) -> None:
        proc, _ = self._launch("delay:0.2")  # wider write windows for the kill to land in
        time.sleep(self.rng.uniform(0.3, seconds))
        self._record(proc, "at a random moment of start-up")

    def in_training(self, epoch: int) -> None:
        proc, since = self._launch("delay:0.2")
        step = 2 * self.rng.randint(1, 6)

        def reached() -> bool:
            return proc.poll() is not None or new_event(
                self.run, since, kind="step", epoch=epoch, epoch_step=step
            )

        wait_for(reached, EXIT_BOUND_S, f"step {step} of epoch {epoch}")
        time.sleep(self.rng.uniform(0.0, 0.6))  # sometimes into validation and the writes
        self._record(proc, f"training or evaluating epoch {epoch}")

    def after_checkpoint(self, epoch: int) -> None:
        proc, _ = self._launch("delay:0.2")
        ckpt = self.run / "checkpoints" / f"epoch-{epoch:04d}{CHECKPOINT_FILES[self.engine][-1]}"
        wait_for(lambda: ckpt.exists() or proc.poll() is not None, EXIT_BOUND_S, ckpt.name)
        time.sleep(self.rng.uniform(0.0, 1.5))
        self._record(proc, f"after the checkpoint of epoch {epoch}")

    def sigterm(self, epoch: int) -> None:
        proc, since = self._launch()
        wait_for(lambda: new_event(self.run, since, kind="step", epoch=epoch), EXIT_BOUND_S,
                 f"a step of epoch {epoch}")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        status = [e for e in events_of(self.run) if e["kind"] == "status"][-1]
        assert status["state"] == "stopped" and status["epoch"] == epoch, status
        assert not lock_held(self.run)
        assert run_state(self.run, events_of(self.run)) == "stopped"
        check_readable(self.run)


@pytest.mark.parametrize("engine", ENGINES)
def test_twenty_kills_lose_nothing(
    engine: str, demo_data: Path, tmp_path: Path, output_dir: Path
) -> None:
    epochs, least_kills = PLAN[engine]
    kinds = file_kinds(engine)
    runs = tmp_path / "runs"
    runs.mkdir()
    reference = launch(demo_data, runs, "reference", engine)  # in parallel, on the other core
    try:
        k = Killer(demo_data, runs, "crash", engine, random.Random(8))
        k.fault("run.json")
        # short random waits: an epoch of this tiny run takes about a second once started,
        # and every epoch skipped here is three kills fewer below
        k.at_random(2.0)
        k.at_random(3.0)
        stopped = False
        while (epoch := last_checkpoint(k.run, engine) + 1) <= epochs:
            for _ in range(2):  # two kills in each epoch's training or validation
                k.in_training(last_checkpoint(k.run, engine) + 1)
            epoch = last_checkpoint(k.run, engine) + 1  # the same, unless a kill came late
            if epoch > epochs:
                break
            k.fault(kinds[epoch % len(kinds)].format(epoch))
            if epoch == epochs:
                k.fault(kinds[(epoch + 1) % len(kinds)].format(epoch))
            if epoch >= 3 and not stopped:
                k.sigterm(epoch)
                stopped = True
            k.after_checkpoint(epoch)
        final = launch(demo_data, runs, "crash", engine)
        assert wait_exit(final, EXIT_BOUND_S, "the resumed trainer") == 0
        assert wait_exit(reference, EXIT_BOUND_S, "the reference trainer") == 0
    finally:
        for proc in (reference,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    run, ref = runs / "crash", runs / "reference"
    assert len(k.kills) >= least_kills, k.kills
    assert not temp_files(run)
    counts = load_every_file(run)
    log = MetricsLog(run / "metrics.jsonl")
    log.refresh()
    assert log.garbage_lines == 0  # torn lines were cut on each resume
    table, ref_table = epoch_table(log.events), epoch_table(events_of(ref))
    assert list(table) == list(range(1, epochs + 1))
    assert run_state(run, log.events) == "finished"
    keys = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5")
    for e in table:
        assert {x: table[e][x] for x in keys} == {x: ref_table[e][x] for x in keys}, e
        for sub in ("predictions", "train_stats"):
            with (
                np.load(run / sub / f"epoch-{e:04d}.npz", allow_pickle=False) as a,
                np.load(ref / sub / f"epoch-{e:04d}.npz", allow_pickle=False) as b,
            ):
                assert a.files == b.files, sub
                assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a.files), (sub, e)
    mine, theirs = checkpoint_arrays(run, epochs, engine), checkpoint_arrays(ref, epochs, engine)
    assert sorted(mine) == sorted(theirs) and any(k.startswith(("momentum", "state")) for k in mine)
    assert all(np.array_equal(mine[n], theirs[n]) for n in theirs), "weights or optimizer differ"
    resumes = sum(e["kind"] == "status" and e["state"] == "resumed" for e in log.events)
    summary = {
        "engine": engine,
        "kills": len(k.kills),
        "where": k.kills,
        "sigterm_stops": 1,
        "resumes": resumes,
        "epochs": epochs,
        "files_loaded": counts,
        "final_val_top1": table[epochs]["val_top1"],
        "final_val_top5": table[epochs]["val_top5"],
        "reference_val_top5": ref_table[epochs]["val_top5"],
    }
    name = "faults-crash.json" if engine == "pytorch" else f"faults-crash-{engine}.json"
    (output_dir / name).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
