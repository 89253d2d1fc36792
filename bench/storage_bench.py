"""Runs in a bucket (docs/storage.md) against moto's S3 server on loopback, each figure beside
the same thing read from a local folder in the same run.

- ``s3_epoch_first_view_ms``: a fresh reader (empty cache) opens a 50,000 x 1,000 run and
  computes an epoch's top-5 confusion matrix: the mirror downloads the run first (its objects
  fetched together). ``s3_epoch_first_view_ratio``: against the same from a local folder this
  process never read.
- ``s3_epoch_warm_view_ms``: the same provider's next cold Run of that run (mirrored: at most
  one HEAD); ``s3_epoch_warm_view_ratio`` against the local provider's next cold Run.
- ``s3_picker_cold_ms`` / ``s3_picker_warm_ms``: the run picker's summaries of N runs (1,000;
  quick 30) from an empty cache, then again within the listing interval.
- ``s3_idle_requests_per_min``: requests a reader makes for one watched, idle live run (its
  writer alive, beating), counted by the server, over a window after the poll backed off;
  ``s3_idle_writer_requests_per_min`` the writer's own.
- ``s3_upload_overhead``: a training loop (fixed compute per epoch, predictions of 10,000 x 100
  logged each epoch) into a local folder, divided by the same into the bucket (1 = free).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.harness import stat
from bench.runs_picker_bench import make_runs
from bench.synthetic_runs import write_run

KEY_ID, SECRET = "AKIABENCH", "bench-secret"


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()))


@contextlib.contextmanager
def _server() -> Iterator[tuple[str, _Count]]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    count = _Count()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(count)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID=KEY_ID,
                      AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", count
    finally:
        server.stop()
        werkzeug.removeHandler(count)
        os.environ.clear()
        os.environ.update(saved)


def _bucket() -> str:
    import fsspec

    name = f"bench-{uuid.uuid4().hex[:10]}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(name)
    return name


def _cache(tmp: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=tmp, prefix="cache-"))
    os.environ["EPOCHSCOPE_CACHE_DIR"] = str(folder)
    return folder


def _epoch_views(tmp: Path, per_class: int, repeats: int) -> dict:
    """First views: a run this process never read (a fresh copy of the local folder; an empty
    mirror) opened and one epoch's matrix computed. Warm views: the same provider's next cold
    Run of a run it has read (local: from the page cache; bucket: from the mirror)."""
    import shutil

    from epochscope import Runs
    from epochscope.storage.sync import upload_once

    source = tmp / "views"
    write_run(source / "big", num_classes=1000, per_class=per_class, epochs=2)
    url = f"s3://{_bucket()}/runs"
    upload_once(source / "big", url)

    def views(root: Path | str) -> tuple[float, float]:
        """Seconds of a first view (a provider made over ``root``) and of its next cold Run."""
        t0 = time.perf_counter()
        provider = Runs(root)
        provider.run("big").confusion(2)
        first = time.perf_counter() - t0
        provider.clear()
        t0 = time.perf_counter()
        provider.run("big").confusion(2)
        return first, time.perf_counter() - t0

    local_first, local_warm, first, warm = [], [], [], []
    for r in range(repeats):  # interleaved: a noisy neighbour slows all four alike
        copy = tmp / f"views-{r}"
        shutil.copytree(source, copy)
        a, b = views(copy)
        local_first.append(a)
        local_warm.append(b)
        _cache(tmp)
        a, b = views(url)
        first.append(a)
        warm.append(b)

    def ms(values: list[float]) -> dict:
        return stat([1000 * v for v in values], "ms").as_dict()

    return {
        "images": 1000 * per_class,
        "local_first_view_ms": ms(local_first),
        "local_warm_view_ms": ms(local_warm),
        "s3_first_view_ms": ms(first),
        "s3_warm_view_ms": ms(warm),
        "s3_first_view_ratio": float(np.median(first) / np.median(local_first)),
        "s3_warm_view_ratio": float(np.median(warm) / np.median(local_warm)),
    }


def _picker(tmp: Path, runs: int, count: _Count) -> dict:
    from epochscope import Runs
    from epochscope.storage.store import Store
    from epochscope.storage.upload import Upload

    local_runs = tmp / "picker"
    make_runs(local_runs, runs, 10)
    url = f"s3://{_bucket()}/runs"
    store = Store(url)
    t0 = time.perf_counter()
    for run_dir in sorted(local_runs.iterdir()):
        upload = Upload(run_dir, store, run_dir.name)
        upload.acquire()
        upload.sync(final=True)
        upload.release()
    upload_s = time.perf_counter() - t0
    _cache(tmp)
    before = len(count.lines)
    provider = Runs(url)
    t0 = time.perf_counter()
    listed = provider.summaries()
    cold = time.perf_counter() - t0
    cold_requests = len(count.lines) - before
    assert len(listed) == runs, (len(listed), runs)
    warm = []
    for _ in range(20):
        t0 = time.perf_counter()
        provider.summaries()
        warm.append(1000 * (time.perf_counter() - t0))
    local = Runs(local_runs)
    local.summaries()
    local_warm = []
    for _ in range(20):
        t0 = time.perf_counter()
        local.summaries()
        local_warm.append(1000 * (time.perf_counter() - t0))
    return {"runs": runs, "upload_s": upload_s, "cold_ms": 1000 * cold,
            "cold_requests": cold_requests, "warm_ms": stat(warm, "ms").as_dict(),
            "local_warm_ms": stat(local_warm, "ms").as_dict()}  # fmt: skip


def _idle(tmp: Path, settle: float, window: float, count: _Count) -> dict:
    import epochscope
    from epochscope import Runs

    _cache(tmp)
    url = f"s3://{_bucket()}/runs"
    labels = np.arange(100) % 10
    run = epochscope.init("live", url, classes=[str(i) for i in range(10)], val_labels=labels)
    run.log_predictions(1, np.eye(10)[labels])
    run.log_epoch(1)
    reader = Runs(url)
    try:
        deadline = time.monotonic() + 60
        while reader.epochs("live") != [1] and time.monotonic() < deadline:
            time.sleep(0.2)  # the writer's first pass
        end_settle = time.monotonic() + settle
        while time.monotonic() < end_settle:  # a dashboard tab polls every 2 s
            reader.events_since("live", 0)
            time.sleep(2)
        start = len(count.lines)
        t0 = time.monotonic()
        while time.monotonic() - t0 < window:
            reader.events_since("live", 0)
            time.sleep(2)
        seen = count.lines[start:]
    finally:
        run.finish()
    minutes = window / 60
    reader_lines = [r for r in seen if "head.json" in r and ('"HEAD ' in r or '"GET ' in r)]
    writer_lines = [r for r in seen if r not in reader_lines]
    return {"window_s": window, "reader_requests": len(reader_lines),
            "writer_requests": len(writer_lines),
            "reader_per_min": len(reader_lines) / minutes,
            "writer_per_min": len(writer_lines) / minutes}  # fmt: skip


def _overhead(tmp: Path, epochs: int, work_s: float, repeats: int) -> dict:
    import epochscope

    labels = np.arange(10_000) % 100
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10_000, 100)).astype(np.float32)
    a = rng.normal(size=(256, 256))

    def train(runs_dir: str, name: str) -> float:
        t0 = time.perf_counter()
        with epochscope.init(name, runs_dir, classes=[str(i) for i in range(100)],
                             val_labels=labels) as run:  # fmt: skip
            for e in range(1, epochs + 1):
                end = time.perf_counter() + work_s
                while time.perf_counter() < end:  # the training step's compute
                    a @ a
                run.log_predictions(e, logits)
                run.log_epoch(e)
        return time.perf_counter() - t0

    url = f"s3://{_bucket()}/runs"
    from epochscope.storage.store import open_store

    # the process's client made (and s3fs imported) before either side is timed: a trainer
    # pays it once per process, not per epoch
    open_store(url).names()
    local, bucket = [], []
    for r in range(repeats):
        local.append(train(str(tmp / "overhead"), f"l{r}"))
        _cache(tmp)
        bucket.append(train(url, f"b{r}"))
    return {"epochs": epochs, "work_s": work_s, "local_s": stat(local, "s").as_dict(),
            "bucket_s": stat(bucket, "s").as_dict(),
            "overhead": float(np.median(local) / np.median(bucket))}  # fmt: skip


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as d, _server() as (_endpoint, count):
        tmp = Path(d)
        return {
            "server": "moto 5.2.6 ThreadedMotoServer on loopback",
            "views": _epoch_views(tmp, per_class=5 if quick else 50, repeats=2 if quick else 5),
            "picker": _picker(tmp, runs=30 if quick else 1000, count=count),
            # quick: the first, backing-off seconds only (a test that it runs, not the figure)
            "idle": _idle(tmp, 4 if quick else 70, 10 if quick else 240, count),
            "upload": _overhead(tmp, 3 if quick else 5, 0.5 if quick else 3.0, 1 if quick else 2),
        }
