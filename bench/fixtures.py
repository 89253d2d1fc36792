"""Real inputs for the benchmarks: demo datasets and tiny training runs made with the real CLI.

Everything is made once under a cache folder (``bench/.cache`` by default, ignored by git) and
reused; the same options always give the same bytes, so a cached copy is as good as a new one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from epochscope.reader import MetricsLog

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
DEMO_TRAIN_PER_CLASS = 24  # make-demo-data's defaults: the demo's per-class counts
DEMO_VAL_PER_CLASS = 12
# the demo preset's model and batch (trainer.presets.DEMO_PRESET), named once for every bench
DEMO_MODEL = ("--arch", "resnet18_v2", "--width", "0.25", "--image-size", "32",
              "--batch-size", "144")  # fmt: skip


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``python -m ...`` in the repository; raise with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        what = " ".join(args[:3])
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def demo_data(
    classes: int,
    image_size: int = 32,
    train_per_class: int = DEMO_TRAIN_PER_CLASS,
    val_per_class: int = DEMO_VAL_PER_CLASS,
    cache: Path = CACHE,
) -> Path:
    """The synthetic demo dataset of that shape (``make-demo-data --if-missing``)."""
    root = cache / f"demo-{classes}c-{image_size}px-{train_per_class}x{val_per_class}"
    cli("trainer", "make-demo-data", str(root), "--classes", str(classes),
        "--image-size", str(image_size), "--train-per-class", str(train_per_class),
        "--val-per-class", str(val_per_class), "--seed", "0", "--if-missing",
        "--quiet")  # fmt: skip
    return root


def train(
    data: Path, runs: Path, name: str, *extra: str, env: dict[str, str] | None = None
) -> Path:
    """A fresh run of ``python -m trainer train`` (any old run of that name is removed)."""
    shutil.rmtree(runs / name, ignore_errors=True)
    cli("trainer", "train", "--data", str(data), "--runs-dir", str(runs), "--name", name,
        *extra, env=env)  # fmt: skip
    return runs / name


def epoch_events(run_dir: Path) -> list[dict]:
    """The run's epoch events in file order (read by epochscope's one parser of the log)."""
    events = MetricsLog(run_dir / "metrics.jsonl").refresh()
    return [e for e in events if e.get("kind") == "epoch"]


def tiny_run(cache: Path = CACHE, quick: bool = False) -> Path:
    """A finished 2-epoch demo-model run on 20 demo classes (quick: 4 classes, batch 8): the
    dashboard benches' run directory (real metrics, predictions, ONNX models). Made once."""
    runs = cache / "runs"
    run = runs / ("tiny-quick" if quick else "tiny")
    if (run / "metrics.jsonl").exists() and len(epoch_events(run)) == 2:
        return run
    if quick:
        data = demo_data(4, train_per_class=8, val_per_class=2, cache=cache)
        size = ("--batch-size", "8")
    else:
        data = demo_data(20, cache=cache)
        size = ()
    return train(data, runs, run.name, *DEMO_MODEL, *size, "--epochs", "2", "--workers", "1",
                 "--lr", "0.2", "--seed", "0")  # fmt: skip
