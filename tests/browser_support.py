"""Fixtures for dashboard tests: a real gunicorn serving the app, a Playwright page on Debian's
Chromium, and hand-made run directories with tiny ONNX models.

Registered in conftest.py with ``pytest_plugins = ["browser_support"]`` so every test module
(training, classifier, confusion explorer) can use ``dashboard_server`` and ``browser_page``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# real ImageNet classes first (tabby cat among them) so WordNet paths show
FAKE_CLASSES = [
    ("n02123045", "tabby"),
    ("n02124075", "Egyptian cat"),
    ("n02123159", "tiger cat"),
    ("n02085620", "Chihuahua"),
    ("n01440764", "tench"),
    ("n03417042", "garbage truck"),
    ("n04254680", "soccer ball"),
    ("n07747607", "orange"),
    ("n09472597", "volcano"),
    ("n03028079", "church"),
]


# --- hand-made run directories -----------------------------------------------------------------
def tiny_onnx_model(path: Path, num_classes: int, seed: int) -> None:
    """A real ONNX classifier: global average pool of the 3 channels, then a linear layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 3.0, size=(3, num_classes)).astype(np.float32)
    bias = rng.normal(0, 0.5, size=(num_classes,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def epoch_event(epoch: int, t: float, acc: float) -> dict:
    return {
        "kind": "epoch", "time": t, "epoch": epoch, "train_loss": 2.0 / epoch,
        "train_top1": acc, "train_top5": min(1.0, acc + 0.3), "val_loss": 2.2 / epoch,
        "val_top1": acc * 0.9, "val_top5": min(1.0, acc + 0.25), "epoch_seconds": 10.0,
        "img_per_s": 2400.0, "val_img_per_s": 8000.0, "lr": 0.1 / epoch, "skipped_images": 0,
    }  # fmt: skip


def make_fake_run(
    runs_dir: Path,
    name: str = "fake",
    epochs_done: int = 2,
    epochs_total: int = 5,
    state: str | None = "finished",
    image_size: int = 8,
    started: float = 1_764_000_000.0,
) -> Path:
    """A run directory as the trainer writes it, with tiny ONNX models per epoch."""
    run = runs_dir / name
    run.mkdir(parents=True)
    n = len(FAKE_CLASSES)
    info = {
        "schema": 1, "name": name, "engine": "pytorch", "engine_version": "test",
        "arch": "tiny_linear", "width": 1.0, "epochs": epochs_total, "batch_size": 4,
        "data": {"root": "/nowhere", "layout": "imagenet-folders", "num_classes": n,
                 "num_train": 40, "num_val": 20},
        "preprocess": {"image_size": image_size, "resize_size": image_size + 2,
                       "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], "input_name": "input",
                       "input_layout": "NCHW", "input_dtype": "float32", "output": "logits"},
        "hparams": {"lr": 0.1}, "world_size": 1,
        "devices": [{"index": 0, "kind": "cpu", "name": "cpu"}],
        "command": "test", "host": "test", "started": started,
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(info))
    (run / "classes.tsv").write_text(
        "index\twnid\tname\n"
        + "".join(f"{i}\t{w}\t{nm}\n" for i, (w, nm) in enumerate(FAKE_CLASSES))
    )
    labels = np.arange(20) % n
    (run / "val_index.tsv").write_text(
        "row\tlabel\tpath\n" + "".join(f"{i}\t{lab}\tval/{i}.png\n" for i, lab in enumerate(labels))
    )
    events = [{"kind": "status", "time": started, "epoch": 1, "state": "started", "pid": 1}]
    t = started
    for e in range(1, epochs_done + 1):
        for k in (1, 2, 3, 4):
            t += 2.5
            events.append({"kind": "step", "time": t, "epoch": e, "step": (e - 1) * 4 + k,
                           "epoch_step": k, "steps_per_epoch": 4, "loss": 2.5 / (e + k / 4),
                           "lr": 0.1 / e, "img_per_s": 2400.0})  # fmt: skip
        events.append({"kind": "device", "time": t, "epoch": e, "index": 0,
                       "device_kind": "cpu", "name": "cpu", "mem_used_mib": 500.0 + e,
                       "mem_total_mib": 24000.0, "util_pct": 90.0})  # fmt: skip
        events.append(epoch_event(e, t, 0.1 * e))
        tiny_onnx_model(run / "models" / f"epoch-{e:04d}.onnx", n, seed=e)
        pred = run / "predictions" / f"epoch-{e:04d}.npz"
        pred.parent.mkdir(exist_ok=True)
        top5 = np.stack([(labels + k + e) % n for k in range(5)], axis=1).astype(np.int16)
        prob = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.1], np.float16), (20, 1))
        with pred.open("wb") as f:
            np.savez(f, top5=top5, prob=prob)
    if state:
        events.append({"kind": "status", "time": t + 1, "epoch": epochs_done, "state": state})
    with (run / "metrics.jsonl").open("w") as f:
        f.writelines(json.dumps(ev) + "\n" for ev in events)
    return run


# --- gunicorn ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer {url} within {timeout} s")


@contextlib.contextmanager
def gunicorn_server(
    runs_dir: Path, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A real gunicorn serving dashboard.app:server over ``runs_dir``; yields its base URL."""
    port = free_port()
    log = runs_dir.parent / f"gunicorn-{port}.log"
    cmd = [
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", "4",
        "--bind", f"127.0.0.1:{port}", "--timeout", "120", "--no-control-socket",
        "dashboard.app:server",
    ]  # fmt: skip
    full_env = {**os.environ, "RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown stops the workers too
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/", proc, timeout=60)
        yield base
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n--- gunicorn log\n{log.read_text()[-3000:]}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture
def dashboard_server() -> Iterator[Callable[..., str]]:
    """Factory: ``base_url = dashboard_server(runs_dir)`` starts gunicorn, stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(runs_dir: Path, **kw) -> str:
            return stack.enter_context(gunicorn_server(Path(runs_dir), **kw))

        yield start


# --- page helpers shared by the browser tests -----------------------------------------------------
# page coordinates of a point given in axis units (display slots) of the confusion graph
TO_PAGE_JS = """
([x, y]) => {
    const gd = document.querySelector('#confusion-graph .js-plotly-plot');
    const fl = gd._fullLayout, box = gd.getBoundingClientRect();
    return [box.left + fl.xaxis._offset + fl.xaxis.l2p(x),
            box.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
}
"""

# how many points the trace with ``meta == key`` of a graph holds (-1: no graph yet)
POINTS_JS = """
([graphId, key]) => {
    const gd = document.querySelector(`#${graphId} .js-plotly-plot`);
    if (!gd || !gd.data) return -1;
    const trace = gd.data.find(t => t.meta === key);
    return trace ? trace.x.length : 0;
}
"""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")


# --- Chromium via Playwright -------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def browser_page(browser):
    """A fresh page (own context) in the shared headless Chromium, 1400 x 1000."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
