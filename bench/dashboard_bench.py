"""The dashboard on a real training run: bytes per live poll, epoch-to-screen time, classify.

- ``live_poll_bytes_idle`` / ``live_poll_bytes_epoch``: the body of the training page's
  callback reply through the real Dash app (Flask test client, the same
  ``_dash-update-component`` request the page sends), when nothing changed and after one epoch's
  events (steps, device samples, the epoch) were appended to metrics.jsonl.
- ``epoch_to_screen_ms``: real gunicorn, Debian's Chromium via Playwright; an epoch's events are
  appended and the clock stops when the page's validation top-5 trace has one more point.
- ``classify_ms``: one 12-megapixel JPEG posted to /api/v1/classify until its top-5 comes back
  (beside a 0.3 megapixel photo); ``classify_batch_img_per_s``: the classifier over a batch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from bench import fixtures
from bench.harness import rate, stat, time_call

RUN = "live"
GRAPH = "training-graph-accuracy"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # shared/design/findings.md: no reaching outside hosts
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
POINTS_JS = """([graph, key]) => {
    const gd = document.querySelector(`#${graph} .js-plotly-plot`);
    const t = gd && gd.data ? gd.data.find(t => t.meta === key) : null;
    return t ? t.x.length : 0;
}"""


# --- a live run directory: the real run cut after epoch 1, epochs appended by the bench --------
def _blocks(run_dir: Path) -> tuple[list[str], list[str]]:
    """metrics.jsonl lines up to epoch 1's event, and epoch 2's block (steps ... its event)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    ends = [i for i, line in enumerate(lines) if json.loads(line).get("kind") == "epoch"]
    return lines[: ends[0] + 1], lines[ends[0] + 1 : ends[1] + 1]


def _epoch_block(block: list[str], epoch: int) -> str:
    """Epoch 2's events renumbered as ``epoch``, with current times (a later epoch arriving)."""
    now, out = time.time(), []
    last = json.loads(block[-1])["time"]
    for line in block:
        ev = json.loads(line)
        ev["time"] = now - (last - ev["time"])
        ev["epoch"] = epoch
        out.append(json.dumps(ev) + "\n")
    return "".join(out)


def live_run(source: Path, runs: Path) -> tuple[Path, list[str]]:
    run = runs / RUN
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("checkpoints", "*.lock", "*.pid"))
    head, block = _blocks(source)
    (run / "metrics.jsonl").write_text("".join(head))
    return run, block


def append(run: Path, text: str) -> None:
    with (run / "metrics.jsonl").open("a") as f:  # one write, as the trainer does
        f.write(text)


# --- poll bytes through the Dash app --------------------------------------------------------------
def _training_callback(client) -> dict:
    deps = client.get("/_dash-dependencies").get_json()
    return next(d for d in deps if "training-state.data" in d["output"])


def _poll(client, dep: dict, n: int, state: dict | None) -> tuple[int, dict | None]:
    outputs = [
        dict(zip(("id", "property"), o.rsplit(".", 1), strict=True))
        for o in dep["output"].strip(".").split("...")
    ]
    body = {
        "output": dep["output"], "outputs": outputs,
        "inputs": [{"id": "training-interval", "property": "n_intervals", "value": n},
                   {"id": "shell-runs", "property": "value", "value": [RUN]}],
        "state": [{"id": "training-state", "property": "data", "value": state}],
        "changedPropIds": ["training-interval.n_intervals"],
    }  # fmt: skip
    reply = client.post("/_dash-update-component", json=body)
    if reply.status_code == 204:
        return 0, state
    data = reply.get_json()
    return len(reply.get_data()), data["response"]["training-state"]["data"]


def poll_bytes(run: Path, block: list[str], repeats: int) -> dict:
    os.environ["RUNS_DIR"] = str(run.parent)  # read at call time by dashboard.config
    from dashboard.app import server

    client = server.test_client()
    dep = _training_callback(client)
    first, state = _poll(client, dep, 0, None)
    idle, epoch = [], []
    for k in range(repeats):
        n, state = _poll(client, dep, 2 * k + 1, state)
        idle.append(n)
        append(run, _epoch_block(block, 2 + k))
        n, state = _poll(client, dep, 2 * k + 2, state)
        epoch.append(n)
    return {
        "first_poll_bytes": first,  # the whole figures, once, when the page opens
        "idle_bytes": stat(idle, "bytes").as_dict(),
        "epoch_bytes": stat(epoch, "bytes").as_dict(),
    }


# --- epoch to screen: gunicorn + Chromium ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(runs: Path) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "4", "--bind",
           f"127.0.0.1:{port}", "--no-control-socket", "dashboard.app:server"]  # fmt: skip
    env = {**os.environ, "RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=fixtures.REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own group: the worker goes too
        proc.wait(timeout=20)


def epoch_to_screen(run: Path, block: list[str], first_epoch: int, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    key = f"{RUN}/val_top5"
    times = []
    with gunicorn(run.parent) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/?run={RUN}")
            page.wait_for_function(f"({POINTS_JS})({json.dumps([GRAPH, key])}) > 0", timeout=60_000)
            for k in range(repeats):
                points = page.evaluate(POINTS_JS, [GRAPH, key])
                page.wait_for_timeout(300 + 211 * k)  # land at different phases of the 1 s poll
                t0 = time.perf_counter()
                append(run, _epoch_block(block, first_epoch + k))
                page.wait_for_function(
                    f"({POINTS_JS})({json.dumps([GRAPH, key])}) > {points}", polling="raf",
                    timeout=20_000,
                )  # fmt: skip
                times.append((time.perf_counter() - t0) * 1000)
        finally:
            browser.close()
    return stat(times, "ms").as_dict()


# --- classification -----------------------------------------------------------------------------
def photo_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """scikit-image's chelsea (a tabby cat) scaled to ``width`` x ``height``, with sensor-like
    noise so the JPEG is as heavy as a real photo of that size."""
    from skimage import data

    im = Image.fromarray(data.chelsea()).resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 4, (height, width, 3))
    arr = np.clip(np.asarray(im, np.float32) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=90)
    return out.getvalue()


def classify(run: Path, repeats: int, batch: int, big: tuple[int, int]) -> dict:
    os.environ["RUNS_DIR"] = str(run.parent)
    from dashboard.app import server
    from dashboard.inference import Classifier

    client = server.test_client()
    photos = {"12mp": photo_jpeg(*big), "0.3mp": photo_jpeg(640, 480)}
    out: dict = {"jpeg_bytes": {k: len(v) for k, v in photos.items()}}
    for name, jpeg in photos.items():

        def post(jpeg: bytes = jpeg) -> None:
            form = {"image": (io.BytesIO(jpeg), "photo.jpg"), "run": RUN}
            reply = client.post("/api/v1/classify", data=form)
            assert reply.status_code == 200 and reply.get_json()["top5"], reply.data

        out[f"classify_{name}_ms"] = stat(
            [t * 1000 for t in time_call(post, repeats)], "ms"
        ).as_dict()
    epoch = max(e["epoch"] for e in fixtures.epoch_events(run))
    classifier = Classifier.for_run(run, min(epoch, 2))
    uploads = [photo_jpeg(640, 480, seed=i) for i in range(batch)]
    out["batch"] = batch
    out["batch_img_per_s"] = rate(batch, time_call(lambda: classifier.classify(uploads), repeats))
    out["batch_img_per_s"] = out["batch_img_per_s"].as_dict()
    return out


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    source = fixtures.tiny_run(cache, quick)
    repeats = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        live, block = live_run(source, runs)
        out: dict = {"poll": poll_bytes(live, block, repeats)}
        if Path(CHROMIUM).exists():
            out["epoch_to_screen_ms"] = epoch_to_screen(live, block, 2 + repeats, repeats)
        else:
            out["epoch_to_screen_ms"] = {"skipped": f"{CHROMIUM} not installed"}
        big = (1000, 750) if quick else (4000, 3000)
        out["classify"] = classify(live, repeats, 4 if quick else 32, big)
    return out
