"""Shared, expensive fixtures: one tiny demo dataset and one tiny training run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.mxnet_engine.launch import mxnet_python

pytest_plugins = ["tests.support"]  # dashboard_server, browser_page (tests/support.py)

REPO = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO / "test-output"  # screenshots and other artefacts a person may want to see

HAVE_MXNET = os.access(mxnet_python(), os.X_OK)
needs_mxnet = pytest.mark.skipif(
    not HAVE_MXNET, reason=f"{mxnet_python()} is missing: `make install-mxnet` to run these"
)
# the command-line options that choose each engine (the fault tests run both)
ENGINE_ARGS = {"pytorch": (), "mxnet": ("--engine", "mxnet")}
ENGINES = [pytest.param("pytorch"), pytest.param("mxnet", marks=needs_mxnet)]

TINY_CLASSES = 20
TINY_EPOCHS = 3


def run_cli(
    *args: str, timeout: float = 300, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` in a subprocess, the way a user runs the tools."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    env.update(kw.pop("env", {}))
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=kw.pop("cwd", REPO),
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny embedded demo dataset: 20 classes spread over WordNet, 32 px."""
    root = tmp_path_factory.mktemp("data") / "demo"
    run_cli(
        "trainer", "make-demo-data", str(root),
        "--classes", str(TINY_CLASSES), "--train-per-class", "40", "--val-per-class", "10",
        "--image-size", "32", "--seed", "0",
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


TINY_TRAIN_ARGS = (
    "--arch", "resnet18_v2", "--width", "0.25", "--epochs", str(TINY_EPOCHS),
    "--batch-size", "64", "--image-size", "32", "--lr", "0.1", "--workers", "0", "--seed", "0",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(demo_data: Path, runs_dir: Path) -> Path:
    """One finished tiny PyTorch training run (20 classes, 3 epochs, 32 px)."""
    run_cli(
        "trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs_dir),
        "--name", "tiny", *TINY_TRAIN_ARGS,
    )  # fmt: skip
    return runs_dir / "tiny"
