"""A trainer and a dashboard that share nothing but a bucket (two machines' stand-in): the
trainer writes s3:// through moto's S3 server, and az:// through Azurite; a gunicorn with its
own cache reads the same bucket, each epoch reaches it within seconds, and a trainer on a third
"machine" (a fresh cache) resumes the run from the bucket at the next epoch."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN_ARGS, run_cli
from tests.storage_servers import AZURITE_KEY, S3_SECRET
from tests.support import gunicorn, http
from tests.waits import stretched, wait_for

pytestmark = pytest.mark.slow


def _args(epochs: int) -> list[str]:
    args = list(TINY_TRAIN_ARGS)
    args[args.index("--epochs") + 1] = str(epochs)
    return args


def _written_epochs(staging: Path) -> dict[int, float]:
    """Epochs the trainer's own copy has logged, with when this test first saw each."""
    found = {}
    for log in staging.rglob("metrics.jsonl"):
        for line in log.read_bytes().splitlines():
            with_epoch = json.loads(line) if line.strip().startswith(b"{") else {}
            if with_epoch.get("kind") == "epoch":
                found[with_epoch["epoch"]] = time.monotonic()
    return found


@pytest.fixture(params=["s3", "az"])
def bucket(request, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, str], str]:
    """(a fresh runs URL, the environment that reaches it, the secret in that environment):
    moto's S3 server or Azurite, the same test through both."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        return f"s3://{s3.new_bucket()}/runs", dict(s3.env), S3_SECRET
    azurite = request.getfixturevalue("azurite_session")
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return f"az://{azurite.new_container()}/runs", env, AZURITE_KEY


def test_a_run_trained_into_a_bucket_shows_in_a_dashboard_reading_it_and_resumes_elsewhere(
    bucket: tuple[str, dict[str, str], str], demo_data: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    url, store_env, secret = bucket
    trainer_env = {**store_env, "EPOCHSCOPE_CACHE_DIR": str(tmp_path / "trainer-machine")}
    dash_env = {**store_env, "RUNS_DIR": url, "EPOCHSCOPE_CACHE_DIR": str(tmp_path / "dashboard")}
    # the served defaults are what is held (the s3 fixture turns the throttles off)
    dash_env.update(EPOCHSCOPE_POLL_SECONDS="2", EPOCHSCOPE_LIST_SECONDS="30")
    (tmp_path / "logs").mkdir()
    with gunicorn(tmp_path / "logs" / "runs", env=dash_env) as base:
        cmd = [sys.executable, "-m", "trainer", "train", "--data", str(demo_data), "--runs-dir",
               url, "--name", "cloud", *_args(2)]  # fmt: skip
        log = (tmp_path / "logs" / "trainer.log").open("wb")
        proc = subprocess.Popen(cmd, env={**os.environ, **trainer_env}, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
        seen_at: dict[int, float] = {}
        lag: dict[int, float] = {}
        deadline = time.monotonic() + stretched(240)
        while len(lag) < 2 and time.monotonic() < deadline:
            for epoch, at in _written_epochs(tmp_path / "trainer-machine").items():
                seen_at.setdefault(epoch, at)
            for epoch in seen_at:
                if epoch not in lag:
                    reply = http(f"{base}/api/v1/calibration?run=cloud&epoch={epoch}")
                    if reply.status == 200:
                        lag[epoch] = time.monotonic() - seen_at[epoch]
            if proc.poll() is not None and len(seen_at) < 2:
                break
            time.sleep(0.1)
        proc.wait(timeout=stretched(120))
        log.close()
        out = (tmp_path / "logs" / "trainer.log").read_text()
        assert proc.returncode == 0, out[-3000:]
        assert sorted(lag) == [1, 2], (lag, out[-2000:])
        print(f"epoch written -> served by the bucket's dashboard: {lag}")
        assert max(lag.values()) <= stretched(3), lag  # each epoch on screen within 3 s
        # a third machine (a fresh cache) resumes from the bucket: checkpoints come with it
        run_cli("trainer", "train", "--data", str(demo_data), "--runs-dir", url, "--name",
                "cloud", *_args(3), "--resume",
                env={**store_env, "EPOCHSCOPE_CACHE_DIR": str(tmp_path / "third")})  # fmt: skip
        wait_for(lambda: http(f"{base}/api/v1/calibration?run=cloud&epoch=3").status == 200,
                 30, "epoch 3 of the resumed run in the dashboard")  # fmt: skip
        # the planted key appears in no page, reply, log or file of any machine
        pages = [
            http(f"{base}{path}").body
            for path in (
                "/",
                "/?run=cloud",
                "/_dash-layout",
                "/api/v1/calibration?run=cloud&epoch=3",
                "/api/v1/report?run=cloud&lite=1",
            )
        ]
        assert not any(secret.encode() in page for page in pages)
        for path in tmp_path.rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path
    from epochscope import Runs

    run = Runs(url).run("cloud")
    assert run.epochs == [1, 2, 3] and sorted(run.epoch_events) == [1, 2, 3]
    states = [e["state"] for e in run.events if e.get("kind") == "status"]
    assert states[-1] == "finished" and "resumed" in states, states
