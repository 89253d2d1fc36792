"""The app shell: URL parsing, picker helpers, imports, the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard import shell
from epochscope.reader import list_runs
from tests.conftest import REPO
from tests.support import make_fake_run


def test_runs_from_search() -> None:
    assert shell.runs_from_search("?run=a&run=b.2&run=a") == ["a", "b.2"]
    assert shell.runs_from_search("?run=../etc&run=ok") == ["ok"]
    assert shell.runs_from_search(None) == [] and shell.runs_from_search("") == []


def test_nav_keeps_the_chosen_runs() -> None:
    assert shell.nav_href("/classify", ["a", "b"]) == "/classify?run=a&run=b"
    assert shell.nav_href("/", []) == "/"


def test_default_runs_and_options(tmp_path: Path) -> None:
    make_fake_run(tmp_path, "old", started=1.0)
    make_fake_run(tmp_path, "new", started=2.0)
    summaries = list_runs(tmp_path)
    assert shell.default_runs(summaries) == ["new"]
    options = shell.picker_options(summaries)
    assert [o["value"] for o in options] == ["new", "old"]
    assert "finished" in options[0]["label"] and "45.0%" in options[0]["label"]


@pytest.mark.slow  # a process that loads the app and compiles its kernels: ~10 s
def test_the_dashboard_imports_no_training_framework_and_warms_up_its_kernels() -> None:
    """Loaded as gunicorn loads it (warm-up at its default, on): no training framework in
    sys.modules, and datashader's kernels already compiled by numba."""
    code = (
        "import gc, sys, dashboard.app, dashboard.inference;"
        "from numba.core.dispatcher import Dispatcher;"
        "bad = [m for m in ('torch', 'onnx', 'mxnet', 'tensorflow') if m in sys.modules];"
        "warm = [d for d in gc.get_objects() if isinstance(d, Dispatcher) and d.signatures"
        " and (d.py_func.__module__ or '').startswith('datashader')];"
        "print(bad, len(warm)); sys.exit(1 if bad or not warm else 0)"
    )
    env = {k: v for k, v in os.environ.items() if k != "EPOCHSCOPE_WARM_UP"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dashboard", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--runs-dir" in proc.stdout and "127.0.0.1" in proc.stdout
