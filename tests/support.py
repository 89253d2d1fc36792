"""What the tests share (no tests of its own): a real gunicorn serving the app, a Playwright page on
Debian's Chromium, hand-made run directories with tiny ONNX models, plain HTTP with urllib and
Dash callback requests built from the app's own /_dash-dependencies, gunicorn pids and RSS, and
the checks that every file of a run directory loads.

Registered in conftest.py with ``pytest_plugins = ["tests.support"]`` so every test module can
use ``dashboard_server`` and ``browser_page``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

from tests.waits import (
    Budget,
    idle_ms,
    wait_for,  # noqa: F401  (the tests import it from here)
)

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


def _write_model(path: Path, graph: Any) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def loop_onnx_model(path: Path, num_classes: int, steps: int = 10**15) -> None:
    """A hostile "classifier": its logits come out of a Loop of ``steps`` additions."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, num_classes]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.ones(shape, np.float32), "one")],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Loop", ["steps", "cond", "zero"], ["acc"], body=body),
         helper.make_node("Identity", ["acc"], ["logits"])],
        "loop",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array(steps, np.int64), "steps"),
         numpy_helper.from_array(np.array(True), "cond"),
         numpy_helper.from_array(np.zeros(shape, np.float32), "zero")],
    )  # fmt: skip
    _write_model(path, graph)


def slow_onnx_model(path: Path, num_classes: int, side: int = 2048, matmuls: int = 200) -> None:
    """A "classifier" of plain operators (no control flow) that computes for minutes: a chain
    of ``matmuls`` products of a side x side matrix grown from one number by Expand."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("ReduceMean", ["pooled"], ["seed"], keepdims=0),
        helper.make_node("Expand", ["seed", "square"], ["m0"]),
    ]
    for n in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"m{n}", "m0"], [f"m{n + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"m{matmuls}"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["weights", "nothing"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes])],
        [numpy_helper.from_array(np.array([side, side], np.int64), "square"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         numpy_helper.from_array(np.arange(num_classes, dtype=np.float32)[None], "weights")],
    )  # fmt: skip
    _write_model(path, graph)


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
    width: float = 1.0,
    hparams: dict | None = None,
) -> Path:
    """A run directory as the trainer writes it, with tiny ONNX models per epoch."""
    run = runs_dir / name
    run.mkdir(parents=True)
    n = len(FAKE_CLASSES)
    info = {
        "schema": 1, "name": name, "engine": "pytorch", "engine_version": "test",
        "arch": "tiny_linear", "width": width, "epochs": epochs_total, "batch_size": 4,
        "data": {"root": "/nowhere", "layout": "imagenet-folders", "num_classes": n,
                 "num_train": 40, "num_val": 20},
        "preprocess": {"image_size": image_size, "resize_size": image_size + 2,
                       "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], "input_name": "input",
                       "input_layout": "NCHW", "input_dtype": "float32", "output": "logits"},
        "hparams": hparams or {"lr": 0.1}, "world_size": 1,
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


def make_hostile_runs(runs_dir: Path, names: list[str], hparams: dict) -> tuple[Path, Path]:
    """A fake run whose first classes are named ``names`` and whose hyper-parameters are
    ``hparams`` (text meant to break out of HTML), and a second run with the same classes to
    compare it with; both paths."""
    run = make_fake_run(runs_dir, "hostile", epochs_done=3, hparams=hparams)
    rows = [line.split("\t") for line in (run / "classes.tsv").read_text().splitlines()]
    for i, name in enumerate(names, start=1):
        rows[i][2] = name
    with (run / "classes.tsv").open("w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    other = make_fake_run(runs_dir, "other", epochs_done=2)
    (other / "classes.tsv").write_text((run / "classes.tsv").read_text())
    return run, other


def make_label_run(
    runs_dir: Path, name: str = "labels", epochs: int = 3, per_class: int = 12, seed: int = 0
) -> tuple[Path, dict[int, np.ndarray], np.ndarray]:
    """A run logged through ``epochscope.init`` (so each predictions file holds the label
    arrays): FAKE_CLASSES, ``per_class`` images each, logits that learn over the epochs, and
    a tenth of the labels moved to another class. Returns (run directory, logits of each epoch,
    the given labels)."""
    import epochscope

    rng = np.random.default_rng(seed)
    n_classes = len(FAKE_CLASSES)
    truth = np.arange(per_class * n_classes) % n_classes
    labels = truth.copy()
    moved = rng.choice(len(truth), len(truth) // 10, replace=False)
    labels[moved] = (truth[moved] + rng.integers(1, n_classes, len(moved))) % n_classes
    samples = [(f"/nowhere/val/{i}.png", int(lab)) for i, lab in enumerate(labels)]
    logits = {}
    with epochscope.init(name, runs_dir, classes=FAKE_CLASSES, val_images=samples,
                         data_root="/nowhere", epochs=epochs) as run:  # fmt: skip
        for epoch in range(1, epochs + 1):
            z = rng.normal(0, 1.5, (len(truth), n_classes)).astype(np.float32)
            z[np.arange(len(truth)), truth] += 1.5 * epoch
            logits[epoch] = z
            run.log_predictions(epoch, z)
            run.log_epoch(epoch, train_loss=1.0 / epoch)
    return runs_dir / name, logits, labels


def strip_label_arrays(run: Path, epoch: int) -> None:
    """Re-save an epoch's predictions file with its top-5 only, as files were written before
    the label arrays existed."""
    path = run / "predictions" / f"epoch-{epoch:04d}.npz"
    with np.load(path) as npz:
        kept = {"top5": npz["top5"], "prob": npz["prob"]}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **kept)
    os.replace(tmp, path)


# --- gunicorn ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dashboard_server() -> Iterator[Callable[..., str]]:
    """Factory: ``base_url = dashboard_server(runs_dir)`` starts gunicorn, stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(runs_dir: Path, **kw) -> str:
            return stack.enter_context(gunicorn(Path(runs_dir), **kw))

        yield start


# --- page helpers shared by the browser tests -----------------------------------------------------
def to_page_js(graph_id: str) -> str:
    """JS: the page coordinates of a point given in axis units of graph ``graph_id``."""
    return f"""
([x, y]) => {{
    const gd = document.querySelector('#{graph_id} .js-plotly-plot');
    const fl = gd._fullLayout, box = gd.getBoundingClientRect();
    return [box.left + fl.xaxis._offset + fl.xaxis.l2p(x),
            box.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
}}
"""


def points_view_js(graph_id: str) -> str:
    """JS: what a map of points (the kit's points figure) shows in graph ``graph_id``: its
    ranges, image, meta, title and hover cells; null before its image is drawn."""
    return f"""
() => {{
    const gd = document.querySelector('#{graph_id} .js-plotly-plot');
    if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) return null;
    const im = gd.layout.images[0], cells = gd.data[0];
    return {{x: gd.layout.xaxis.range, y: gd.layout.yaxis.range, src: im.source,
            meta: gd.layout.meta, title: gd.layout.title.text,
            cells: {{x0: cells.x0, dx: cells.dx, y0: cells.y0, dy: cells.dy}}}};
}}
"""


# page coordinates of a point given in axis units (display slots) of the confusion graph
TO_PAGE_JS = to_page_js("confusion-graph")

# how many points the trace with ``meta == key`` of a graph holds (-1: no graph yet)
POINTS_JS = """
([graphId, key]) => {
    const gd = document.querySelector(`#${graphId} .js-plotly-plot`);
    if (!gd || !gd.data) return -1;
    const trace = gd.data.find(t => t.meta === key);
    return trace ? trace.x.length : 0;
}
"""


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
    context.set_default_timeout(idle_ms(30))  # Playwright's 30 s, at idle speed
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


# --- HTTP, gunicorn processes and run-directory checks ----------------------------------------
HTTP_TIMEOUT = 30.0  # a request slower than this is a hung worker, not a slow one


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> Reply:
    """One request on its own connection; any status comes back as a Reply (no redirects).

    A server may answer (413) and close before a large body is sent: the answer still counts.
    """
    parts = urlparse(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    start = time.perf_counter()
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered early
            conn.request(method or ("POST" if data is not None else "GET"), target, data,
                         headers or {})  # fmt: skip
        r = conn.getresponse()
        body = r.read()
        return Reply(r.status, body, dict(r.headers), time.perf_counter() - start)
    finally:
        conn.close()


def multipart(fields: dict[str, str], filename: str, payload: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with the file in the field 'image'."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + payload
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def classify(base: str, payload: bytes, name: str, headers: dict | None = None, **fields) -> Reply:
    body, ctype = multipart({k: str(v) for k, v in fields.items()}, name, payload)
    return http(base + "/api/v1/classify", body, {"Content-Type": ctype, **(headers or {})})


# --- Dash callbacks over HTTP --------------------------------------------------------------------
class DashClient:
    """Calls a Dash callback the way the browser does: POST /_dash-update-component."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = headers or {}
        reply = http(base + "/_dash-dependencies", headers=self.headers)
        assert reply.status == 200, reply
        self.deps = reply.json()

    def find(self, output_part: str) -> dict[str, Any]:
        # an output named exactly first ("map-run.options" is not "data-map-run.options")
        found = [d for d in self.deps if output_part in d["output"].strip(".").split("...")]
        found = found or [d for d in self.deps if output_part in d["output"]]
        assert len(found) == 1, f"{len(found)} callbacks output {output_part}"
        return found[0]

    def body(self, output_part: str, values: dict[str, Any], changed: list[str]) -> bytes:
        dep = self.find(output_part)

        def fill(items: list[dict]) -> list[dict]:
            return [
                {"id": i["id"], "property": i["property"],
                 "value": values.get(f"{i['id']}.{i['property']}")}
                for i in items
            ]  # fmt: skip

        outputs = [
            dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
            for part in dep["output"].strip(".").split("...")
        ]
        payload = {
            "output": dep["output"],
            "outputs": outputs if dep["output"].startswith("..") else outputs[0],
            "inputs": fill(dep["inputs"]),
            "state": fill(dep["state"]),
            "changedPropIds": changed,
        }
        return json.dumps(payload).encode()

    def call(
        self, output_part: str, values: dict[str, Any], changed: list[str] | None = None
    ) -> Reply:
        data = self.body(output_part, values, changed or [])
        headers = {"Content-Type": "application/json", **self.headers}
        return http(self.base + "/_dash-update-component", data, headers)


def figure_ok(fig: Any) -> bool:
    """A figure the browser can draw: a dict with a data list and a layout dict."""
    return (
        isinstance(fig, dict)
        and isinstance(fig.get("data", []), list)
        and isinstance(fig.get("layout", {}), dict)
    )


# --- processes -----------------------------------------------------------------------------------
def gunicorn_pids(base: str) -> tuple[int, list[int]]:
    """(master, workers) of the gunicorn listening at ``base`` (found by its --bind in /proc)."""
    bind = f"127.0.0.1:{urlparse(base).port}"
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"gunicorn" in b" ".join(cmd) and bind.encode() in cmd:
            found[int(entry.name)] = ppid
    masters = [p for p, pp in found.items() if pp not in found]
    assert len(masters) == 1, found
    return masters[0], [p for p, pp in found.items() if pp == masters[0]]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def events_of(run: Path) -> list[dict]:
    """The complete lines of metrics.jsonl (a torn last line is skipped, as readers do)."""
    try:
        lines = (run / "metrics.jsonl").read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    out = []
    for line in lines[:-1]:
        out.append(json.loads(line))
    return out


# --- run directories -----------------------------------------------------------------------------
def visible_files(run: Path) -> list[Path]:
    return [
        p for p in run.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(run).parts)
    ]  # fmt: skip


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*.tmp-*")]


# each engine's checkpoint files in the order it writes them; the last marks a whole checkpoint
CHECKPOINT_FILES = {"pytorch": (".pt",), "mxnet": (".params", ".states.npz", ".json")}
MXNET_ARRAYS_MAGIC = (0x112).to_bytes(8, "little")  # nd.save's file header


def checkpoint_marker(engine: str) -> str:
    return CHECKPOINT_FILES[engine][-1]


def last_checkpoint(run: Path, engine: str) -> int:
    """The newest epoch with a complete checkpoint (0: none)."""
    found = run.glob(f"checkpoints/epoch-*{checkpoint_marker(engine)}")
    return max((int(p.name[6:].split(".")[0]) for p in found), default=0)


def checkpoint_arrays(run: Path, epoch: int, engine: str) -> dict[str, np.ndarray]:
    """A checkpoint's weights and optimizer state as numpy arrays, loaded without pickle."""
    folder = run / "checkpoints"
    if engine == "pytorch":
        import torch

        state = torch.load(folder / f"epoch-{epoch:04d}.pt", weights_only=True)
        out = {f"model.{k}": v.numpy() for k, v in state["model"].items()}
        for i, s in state["optimizer"]["state"].items():
            out[f"momentum.{i}"] = s["momentum_buffer"].numpy()
        return out
    with np.load(folder / f"epoch-{epoch:04d}.states.npz", allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["params"] = np.frombuffer((folder / f"epoch-{epoch:04d}.params").read_bytes(), np.uint8)
    return out


def load_every_file(run: Path) -> dict[str, int]:
    """Open every visible file of a run directory the way its readers do; counts by kind."""
    import onnxruntime as ort
    import torch

    kinds = ("npz", "train_stats", "onnx", "pt", "json", "tsv", "states", "params")
    counts = dict.fromkeys(kinds, 0)
    for path in visible_files(run):
        suffix = path.suffix.lstrip(".")
        epoch = path.name[6:].split(".")[0] if path.name.startswith("epoch-") else None
        if path.name.endswith(".states.npz"):  # MXNet's optimizer state: plain arrays
            with np.load(path, allow_pickle=False) as z:
                assert "num_update" in z.files and all(z[k].dtype != object for k in z.files)
            suffix = "states"
        elif suffix == "params":  # MXNet's parameters in its own array format
            assert path.read_bytes()[:8] == MXNET_ARRAYS_MAGIC, path
        elif suffix == "npz" and path.parent.name == "embeddings":
            with np.load(path, allow_pickle=False) as z:
                n, d = z["vectors"].shape
                assert z["components"].shape == (d, *z["mean"].shape) and n > 0, path
        elif suffix == "npz" and path.parent.name == "train_stats":
            with np.load(path, allow_pickle=False) as z:
                shapes = {z[k].shape for k in ("p_label", "margin", "other")}
                assert len(shapes) == 1 and next(iter(shapes))[0] > 0, path
            suffix = "train_stats"
        elif suffix == "npz":
            with np.load(path, allow_pickle=False) as z:
                assert z["top5"].shape == z["prob"].shape, path
        elif suffix == "onnx":
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        elif suffix == "pt":
            state = torch.load(path, map_location="cpu", weights_only=True)
            assert state["epoch"] == int(path.stem.split("-")[1]), path
        elif suffix == "json":
            record = json.loads(path.read_text())
            if path.parent.name == "checkpoints":  # MXNet's checkpoint marker
                assert record["epoch"] == int(epoch), path
        elif suffix == "tsv":
            assert path.read_text().endswith("\n"), path
        else:
            continue
        counts[suffix] += 1
    return counts


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


@contextlib.contextmanager
def gunicorn(
    runs_dir: Path, workers: int = 1, threads: int = 4, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A real gunicorn serving dashboard.app:server over ``runs_dir`` like the Procfile's;
    yields its base URL once it answers anything (a 401 included, so it also serves a
    token-protected dashboard), waiting at idle speed (it boots slower on a busy box). Its
    process group (the workers too) dies after; its log is beside ``runs_dir``."""
    port = free_port()
    log = runs_dir.parent / f"gunicorn-{port}.log"
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads",
           str(threads), "--bind", f"127.0.0.1:{port}", "--timeout", "120",
           "--no-control-socket", "dashboard.app:server"]  # fmt: skip
    full_env = {**os.environ, "RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        budget = Budget(60)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}")
            try:
                http(base + "/_dash-layout", timeout=5)
                break
            except OSError:
                if budget.left() <= 0:
                    raise RuntimeError(f"gunicorn did not answer {base} within 60 s") from None
                time.sleep(0.2)
    except RuntimeError as e:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        raise RuntimeError(f"{e}\n--- gunicorn log\n{log.read_text()[-3000:]}") from None
    try:
        yield base
    finally:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# --- a run directory written by a trainer -----------------------------------------------------
CONTRACT_FILES = ("run.json", "classes.tsv", "val_index.tsv", "metrics.jsonl")
EPOCH_KEYS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5",
              "epoch_seconds", "img_per_s", "val_img_per_s", "lr", "skipped_images")  # fmt: skip


def read_events(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"", "metrics.jsonl must end with a newline"
    return [json.loads(line) for line in lines[:-1]]


def epochs_last_wins(events: list[dict]) -> dict[int, dict]:
    return {e["epoch"]: e for e in events if e["kind"] == "epoch"}


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check_train_stats(run: Path, epoch: int, info: dict, event: dict) -> None:
    """An epoch's training statistics: one row per training image, by training index; the
    preferred other class is never the image's label; and the share of images whose margin is
    positive is the epoch's train top-1 (the same logits, gathered by index from every rank)."""
    train = read_tsv(run / "train_index.tsv")
    assert len(train) == info["data"]["num_train"]
    labels = np.array([int(r["label"]) for r in train])
    with np.load(run / "train_stats" / f"epoch-{epoch:04d}.npz", allow_pickle=False) as z:
        p, m, o = (z[k] for k in ("p_label", "margin", "other"))
    assert p.dtype == m.dtype == np.float16 and p.shape == m.shape == o.shape == (len(train),)
    seen = ~np.isnan(p)
    assert seen.mean() > 0.9, seen.mean()  # the loader drops at most one partial batch
    assert ((o >= 0) == seen).all() and (o[seen] != labels[seen]).all()
    assert ((p[seen] >= 0) & (p[seen] <= 1)).all()
    assert (m[seen] > 0).mean() == pytest.approx(event["train_top1"], abs=0.02)


def check_run_directory(run: Path, epochs: int) -> dict:
    """Every file of docs/run-directory.md, loadable and consistent; returns row counts."""
    for name in CONTRACT_FILES:
        assert (run / name).is_file(), name
    info = json.loads((run / "run.json").read_text())
    classes = read_tsv(run / "classes.tsv")
    val = read_tsv(run / "val_index.tsv")
    assert [int(r["index"]) for r in classes] == list(range(info["data"]["num_classes"]))
    assert len(val) == info["data"]["num_val"] and [int(r["row"]) for r in val] == list(
        range(len(val))
    )
    labels = np.array([int(r["label"]) for r in val])
    assert all((Path(info["data"]["root"]) / r["path"]).is_file() for r in val)
    assert info["preprocess"]["input_name"] == "input" and info["preprocess"]["output"] == "logits"

    events = read_events(run)
    assert all({"kind", "time", "epoch"} <= set(e) for e in events)
    assert events[0]["kind"] == "status" and events[0]["state"] in ("started", "resumed")
    status = [e for e in events if e["kind"] == "status"]
    assert status[-1]["state"] == "finished"
    per_epoch = epochs_last_wins(events)
    assert sorted(per_epoch) == list(range(1, epochs + 1))
    for e in per_epoch.values():
        assert set(EPOCH_KEYS) <= set(e), e
        assert 0 <= e["val_top1"] <= e["val_top5"] <= 1
    steps = [e for e in events if e["kind"] == "step"]
    assert steps and all(0 <= s["top1"] <= s["top5"] <= 1 for s in steps)
    assert any(e["kind"] == "device" and e["device_kind"] == "cpu" for e in events)

    import onnx

    for epoch in range(1, epochs + 1):
        with np.load(run / "predictions" / f"epoch-{epoch:04d}.npz", allow_pickle=False) as z:
            assert z["top5"].dtype == np.int16 and z["top5"].shape == (len(val), 5)
            assert z["prob"].dtype == np.float16 and z["prob"].shape == (len(val), 5)
            assert (z["top5"] >= 0).all() and (z["top5"] < len(classes)).all()
            assert np.all(np.diff(z["prob"].astype(np.float32), axis=1) <= 1e-3)  # best first
            top5 = z["top5"]
        # the file agrees with the epoch event's accuracy
        hit5 = (top5 == labels[:, None]).any(axis=1).mean()
        assert per_epoch[epoch]["val_top5"] == pytest.approx(hit5)
        onnx.checker.check_model(str(run / "models" / f"epoch-{epoch:04d}.onnx"))
        check_train_stats(run, epoch, info, per_epoch[epoch])
    assert (run / "checkpoints" / f"epoch-{epochs:04d}.pt").is_file()
    assert len(list((run / "checkpoints").glob("epoch-*.pt"))) <= 2  # --keep-checkpoints 2
    assert not list(run.rglob(".*.tmp-*"))
    assert not (run / "trainer.pid").exists()
    return {
        "val": len(val),
        "classes": len(classes),
        "epochs": len(per_epoch),
        "steps": len(steps),
        "files": sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()),
    }


def make_train_stats_run(
    runs_dir: Path, name: str, *, as_torch: bool = False
) -> tuple[Path, np.ndarray]:
    """A run logged through the public API with training statistics (400 training images, 4
    classes, 3 epochs, 40 labels moved to another class) whose 'model' prefers the true class
    of every image; returns the run directory and the moved images' indices."""
    import epochscope

    rng = np.random.default_rng(2)
    n, c, epochs, batch = 400, 4, 3, 64
    true = rng.integers(0, c, n)
    given = true.copy()
    planted = rng.choice(n, 40, replace=False)
    given[planted] = (true[planted] + 1) % c
    val = np.arange(20) % c
    paths = [(f"train/{i}.png", int(given[i])) for i in range(n)]
    run = epochscope.init(name, runs_dir, classes=list("abcd"), val_labels=val,
                          train_images=[(str(runs_dir / "data" / p), y) for p, y in paths],
                          data_root=runs_dir / "data")  # fmt: skip
    with run:
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n)[: n - n % batch]  # drop_last: some unseen each epoch
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                logits = rng.normal(size=(len(idx), c)).astype(np.float32)
                logits[np.arange(len(idx)), true[idx]] += 2.0 + epoch
                if as_torch:
                    import torch  # only the torch variant needs it

                    run.log_train_batch(torch.from_numpy(idx), torch.from_numpy(logits))
                else:
                    run.log_train_batch(idx, logits)
            run.log_predictions(epoch, np.eye(c)[val] * 3.0)
            run.log_epoch(epoch)
    return runs_dir / name, planted
