"""Packaging as users expect it: pyproject's extras are the requirements files' pins (one
source of versions), and the ``epochscope`` console command reaches every part."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _pins(name: str) -> list[str]:
    lines = (REPO / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_the_extras_are_the_requirements_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    storage = {"fsspec", "s3fs", "adlfs"}
    runtime = _pins("requirements.txt")
    assert extras["dashboard"] == [p for p in runtime if p.split("==")[0] not in storage]
    assert extras["trainer"] == _pins("requirements-train.txt")
    for extra, library in (("s3", "s3fs"), ("azure", "adlfs")):
        assert set(extras[extra]) == {p for p in runtime if p.split("==")[0] in
                                      ("fsspec", library)}  # fmt: skip
    assert project["dependencies"] == ["numpy>=1.23"]  # the core needs numpy only
    assert project["scripts"]["epochscope"] == "epochscope.cli:main"


def test_the_console_command_reaches_every_part(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "epochscope"  # made by pip install -e .
    assert command.exists(), "make install puts the epochscope command in .venv/bin"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(command), *args], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)  # fmt: skip

    top = run("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("sync", "dashboard", "import"))
    dash = run("dashboard", "--runs-dir", "gs://bucket/runs")
    assert dash.returncode == 2 and "pip install 'epochscope[gcs]'" in dash.stderr
    train = run("trainer", "train", "--help")
    assert train.returncode == 0 and "--runs-dir" in train.stdout


@pytest.mark.packaging
def test_the_wheel_with_its_dashboard_and_s3_extras_serves_a_bucket_run(s3, tmp_path: Path) -> None:
    """As a user installs it: the built wheel with only [dashboard,s3] in a fresh virtual
    environment (no torch, no test tools), its ``epochscope dashboard`` serving a bucket run."""
    import epochscope
    from tests.support import free_port, http
    from tests.waits import run_watched, wait_for

    dist, source = tmp_path / "dist", tmp_path / "source"
    # built from a copy of the working tree's files: setuptools leaves build/ and egg-info
    # beside the sources it builds, which must not land in the checkout
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    for rel in filter(None, listed.decode().split("\0")):
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    built = run_watched([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                         "-w", str(dist), str(source)], silence=300, what="pip wheel")  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("epochscope-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = run_watched([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                       f"{wheel}[dashboard,s3]"], silence=600, what="pip install")  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"],
                           capture_output=True, timeout=60)  # fmt: skip
    assert probe.returncode != 0, "the dashboard extra must not pull a training framework"

    url = f"s3://{s3.new_bucket()}/runs"
    labels = np.arange(40) % 5
    with epochscope.init("r", url, classes=list("abcde"), val_labels=labels) as run:
        run.log_predictions(1, np.eye(5)[labels] * 3.0)
        run.log_epoch(1)
    port = free_port()
    env = {**os.environ, "EPOCHSCOPE_CACHE_DIR": str(tmp_path / "served")}
    env.pop("PYTHONPATH", None)
    log = (tmp_path / "dashboard.log").open("wb")
    server = subprocess.Popen([str(venv / "bin" / "epochscope"), "dashboard", "--runs-dir", url,
                               "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"

        def served() -> bool:
            try:
                return http(f"{base}/api/v1/calibration?run=r&epoch=1").status == 200
            except OSError:
                return False

        try:
            wait_for(served, 120, "the installed dashboard to serve the bucket run", proc=server)
        except AssertionError as failure:
            log.flush()
            printed = (tmp_path / "dashboard.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"{failure}\n--- the dashboard printed:\n{printed}") from None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
