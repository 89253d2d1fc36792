"""Load: 20 simulated users on loopback against a real gunicorn (the Procfile's 2 workers x 4
threads) for a bounded time, polling the training page, zooming the confusion view and
refreshing the run list, while a real trainer writes the run they watch. Zero errors; p50/p95
latencies go to test-output/faults-load.json. The trainer's speed with and without the load is
reported, not asserted."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support import DashClient, gunicorn, make_fake_run

pytestmark = pytest.mark.faults

USERS = 20
SECONDS = float(os.environ.get("EPOCHSCOPE_LOAD_SECONDS", "40"))
TRAIN = (
    "--arch", "resnet18_v2", "--width", "0.25", "--batch-size", "64", "--image-size", "32",
    "--lr", "0.1", "--workers", "0", "--seed", "0", "--log-interval", "2",
)  # fmt: skip


def trainer(data: Path, runs: Path, name: str, epochs: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("EPOCHSCOPE_FAULT", None)
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--runs-dir", str(runs),
           "--name", name, *TRAIN, "--epochs", str(epochs)]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def img_per_s(run: Path) -> float:
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [e["img_per_s"] for e in events if e["kind"] == "epoch"]
    return float(np.median(rates)) if rates else float("nan")


class User(threading.Thread):
    """One browser tab's worth of requests, with a person's pauses between them."""

    def __init__(self, client: DashClient, n: int, deadline: float, log: list) -> None:
        super().__init__(daemon=True)
        self.client, self.deadline, self.log = client, deadline, log
        self.rng = random.Random(n)
        self.state: dict | None = None

    def _timed(self, kind: str, output: str, values: dict, changed: list[str]):
        start = time.perf_counter()
        try:
            reply = self.client.call(output, values, changed)
            status = reply.status
        except OSError as e:  # a timeout or refused connection counts as an error
            reply, status = None, f"{type(e).__name__}"
        self.log.append((kind, status, time.perf_counter() - start))
        return reply

    def poll_training(self, i: int) -> None:
        reply = self._timed(
            "training poll", "training-state.data",
            {"training-interval.n_intervals": i, "shell-runs.value": ["live", "watched"],
             "training-state.data": self.state},
            ["training-interval.n_intervals"],
        )  # fmt: skip
        if reply is not None and reply.status == 200:
            self.state = reply.json()["response"]["training-state"]["data"]

    def zoom(self) -> None:
        lo = self.rng.uniform(0, 60)
        span = self.rng.uniform(3, 40)
        self._timed(
            "confusion zoom", "confusion-graph.figure",
            {"confusion-run.value": "watched", "confusion-epoch.value": self.rng.randint(1, 3),
             "confusion-mode.value": "top5", "confusion-order.value": "index",
             "confusion-scale.value": "eq_hist", "confusion-viewport.data": {"w": 1400, "h": 1000},
             "confusion-graph.relayoutData": {"xaxis.range[0]": lo, "xaxis.range[1]": lo + span,
                                              "yaxis.range[0]": lo, "yaxis.range[1]": lo + span}},
            ["confusion-graph.relayoutData"],
        )  # fmt: skip

    def run_list(self, i: int) -> None:
        self._timed(
            "run list", "shell-runs-known.data",
            {"shell-runs-interval.n_intervals": i, "shell-location.search": "?run=live"},
            ["shell-runs-interval.n_intervals"],
        )  # fmt: skip

    def run(self) -> None:
        i = 0
        while time.monotonic() < self.deadline:
            self.poll_training(i)
            if i % 2 == 0:
                self.run_list(i)
            if i % 3 == 0:
                self.zoom()
            i += 1
            time.sleep(self.rng.uniform(0.5, 1.0))  # the page polls about once a second


def _stats(latencies: list[float]) -> dict[str, float]:
    a = np.array(latencies) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1)}  # fmt: skip


def test_twenty_users_no_errors(demo_data: Path, tmp_path: Path, output_dir: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    _watched(runs)
    alone = trainer(demo_data, tmp_path, "alone", epochs=2)  # the baseline, before any load
    assert alone.wait(timeout=300) == 0
    with gunicorn(runs, workers=2, threads=4) as base:
        client = DashClient(base)
        live = trainer(demo_data, runs, "live", epochs=4)
        log: list = []
        try:
            deadline = time.monotonic() + SECONDS
            users = [User(client, n, deadline, log) for n in range(USERS)]
            for u in users:
                u.start()
            for u in users:
                u.join(timeout=SECONDS + 120)
            assert not any(u.is_alive() for u in users), "a user hung"
            live_code = live.wait(timeout=300)
        finally:
            if live.poll() is None:
                live.kill()
                live.wait()
    errors = [(k, s) for k, s, _ in log if not (isinstance(s, int) and s < 500)]
    kinds = sorted({k for k, _, _ in log})
    report = {
        "users": USERS,
        "seconds": SECONDS,
        "requests": len(log),
        "errors": len(errors),
        "overall": _stats([t for _, _, t in log]),
        **{k: _stats([t for kk, _, t in log if kk == k]) for k in kinds},
        "trainer_img_per_s": {
            "alone": round(img_per_s(tmp_path / "alone")),
            "under_load": round(img_per_s(runs / "live")),
        },
    }
    (output_dir / "faults-load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    assert not errors, errors[:10]
    assert live_code == 0
    assert len(log) >= USERS * 10


def _watched(runs: Path) -> None:
    """A finished run with 100 classes, for zooming (the fake run's predictions, widened)."""
    run = make_fake_run(runs, "watched", epochs_done=3)
    n, rows = 100, 2000
    rng = np.random.default_rng(0)
    labels = rng.integers(0, n, rows)
    (run / "classes.tsv").write_text(
        "index\twnid\tname\n" + "".join(f"{i}\tc{i:03d}\tclass {i}\n" for i in range(n))
    )
    (run / "val_index.tsv").write_text(
        "row\tlabel\tpath\n" + "".join(f"{i}\t{lab}\tval/{i}.png\n" for i, lab in enumerate(labels))
    )
    for e in (1, 2, 3):
        top5 = np.stack([(labels + rng.integers(0, 8 - 2 * e, rows) * k) % n for k in range(5)], 1)
        prob = np.sort(rng.random((rows, 5)), axis=1)[:, ::-1] / 3
        with (run / "predictions" / f"epoch-{e:04d}.npz").open("wb") as f:
            np.savez(f, top5=top5.astype(np.int16), prob=prob.astype(np.float16))
