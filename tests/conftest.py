"""Shared, expensive fixtures: one tiny demo dataset and one tiny training run per session,
built once for all pytest-xdist workers (the first to need one builds it, the others wait)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waits import run_watched, slowness
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

# the ~30 short-lived dashboards the suite starts draw little: each would spend ~4 s compiling
# datashader's kernels at start-up; they compile on first draw instead. The default (on) is
# held by test_the_dashboard_imports_no_training_framework_and_warms_up_its_kernels.
os.environ.setdefault("EPOCHSCOPE_WARM_UP", "0")

TINY_CLASSES = 20
TINY_EPOCHS = 3


def run_cli(
    *args: str, timeout: float = 300, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` in a subprocess, the way a user runs the tools.

    ``timeout`` is how long it may go silent (no output and no CPU, at idle speed) before it
    counts as hung: a long training run that keeps working is never cut off."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    env.update(kw.pop("env", {}))
    proc = run_watched(
        [sys.executable, "-m", *args],
        silence=timeout,
        what=f"python -m {' '.join(args)}",
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


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """``build(folder)`` once per test session, whichever xdist worker asks first; the others
    wait for it and get the same folder. Tests only read what is built here."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    shared.mkdir(exist_ok=True)
    folder, done = shared / name, shared / f"{name}.done"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny embedded demo dataset: 20 classes spread over WordNet, 32 px."""

    def build(folder: Path) -> None:
        run_cli(
            "trainer", "make-demo-data", str(folder / "demo"),
            "--classes", str(TINY_CLASSES), "--train-per-class", "40", "--val-per-class", "10",
            "--image-size", "32", "--seed", "0",
        )  # fmt: skip

    return built_once(tmp_path_factory, "data", build) / "demo"


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


TINY_TRAIN_ARGS = (
    "--arch", "resnet18_v2", "--width", "0.25", "--epochs", str(TINY_EPOCHS),
    "--batch-size", "64", "--image-size", "32", "--lr", "0.1", "--workers", "0", "--seed", "0",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny PyTorch training run (20 classes, 3 epochs, 32 px), alone in its runs
    folder. Shared by every test and worker: copy it before changing anything in it."""

    def build(folder: Path) -> None:
        run_cli(
            "trainer", "train", "--data", str(demo_data), "--runs-dir", str(folder),
            "--name", "tiny", *TINY_TRAIN_ARGS,
        )  # fmt: skip

    return built_once(tmp_path_factory, "tiny-runs", build) / "tiny"


@pytest.fixture(scope="session")
def tiny_ddp_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's training as one torchrun agent with two processes (world size 2), alone
    in its runs folder; shared like ``tiny_run`` (the one-machine DDP test compares it with
    ``tiny_run``, the two-machine test with its two agents)."""
    from tests.support import free_port

    def build(folder: Path) -> None:
        run_cli(
            "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
            "-m", "trainer", "train", "--data", str(demo_data), "--runs-dir", str(folder),
            "--name", "tiny-ddp", *TINY_TRAIN_ARGS, env={"OMP_NUM_THREADS": "1"},
        )  # fmt: skip

    return built_once(tmp_path_factory, "tiny-ddp-runs", build) / "tiny-ddp"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """pytest-timeout's limit, like every wait here, is seconds on an idle machine: stretched
    by how busy the machine is when the test starts (tests/waits.py)."""
    marker = item.get_closest_marker("timeout")
    base = marker.args[0] if marker and marker.args else item.config.getini("timeout")
    if base:
        item.add_marker(pytest.mark.timeout(float(base) * slowness()), append=False)
    yield


@pytest.fixture(scope="session")
def tiny_site(tiny_run: Path, demo_data: Path) -> Iterator[str]:
    """One real gunicorn over the tiny run's folder (thumbnails from the demo data allowed),
    shared by every test of this worker that only reads it; its base URL."""
    from tests.support import gunicorn

    with gunicorn(tiny_run.parent, env={"EPOCHSCOPE_DATA_ROOTS": str(demo_data)}) as base:
        yield base


# The modules that cost most (seconds in a sequential make test, docs/testing.md), started first
# so that both workers finish together instead of one waiting on the last long module.
LONGEST_FIRST = (
    "system/test_faults_crash.py",  # make test-faults' longest (make test leaves it out)
    "system/test_bench.py",  # make test-real's longest
    "trainer/test_trainer_runs.py", "system/test_examples.py", "system/test_damage.py",
    "system/test_browser_map.py", "system/test_browser_dashboard.py",
    "trainer/test_mxnet_engine.py", "trainer/test_multinode.py",
    "system/test_security_access.py", "system/test_browser_error_analysis.py",
    "epochscope/test_hierarchy.py", "system/test_damage_planted.py",
    "epochscope/test_contract.py", "system/test_faults_readers.py",
    "epochscope/test_embedding_map.py",
)  # fmt: skip


# A test that uses one of these needs a real training run or a real server (seconds each): it
# is `slow` (not in make test-quick) without saying so itself
EXPENSIVE_FIXTURES = frozenset({
    "tiny_run", "tiny_ddp_run", "tiny_site", "mx_data", "mx_run", "site", "open_site",
    "dashboard_server", "browser", "browser_page",
})  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if EXPENSIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        module = Path(str(item.fspath)).relative_to(REPO / "tests").as_posix()
        return rank.get(module, len(rank))

    items.sort(key=key)  # stable: the order within a module and among the rest is kept


# --- storage servers (tests/storage_servers.py): one of each per test session ----------------
@pytest.fixture(scope="session")
def s3_session() -> Iterator[Any]:
    from tests.storage_servers import s3_server

    with s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_session: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The session's S3 server, its endpoint and keys in the environment (where a user's
    AWS_* settings would be), this test's own EPOCHSCOPE_CACHE_DIR, and no poll throttle."""
    for key, value in s3_session.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EPOCHSCOPE_POLL_SECONDS", "0")
    monkeypatch.setenv("EPOCHSCOPE_LIST_SECONDS", "0")
    return s3_session


@pytest.fixture(scope="session")
def azurite_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.storage_servers import azurite

    with azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server
