"""Helpers shared by the fault, security and upload tests (no tests of its own).

Plain HTTP with urllib (no new dependency), Dash callback requests built from the app's own
/_dash-dependencies, the pids of a gunicorn master and its workers, and a check that every
file of a run directory loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
from browser_support import free_port

from tests.conftest import REPO

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
        found = [d for d in self.deps if output_part in d["output"]]
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


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


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

    counts = {"npz": 0, "onnx": 0, "pt": 0, "json": 0, "tsv": 0, "states": 0, "params": 0}
    for path in visible_files(run):
        suffix = path.suffix.lstrip(".")
        epoch = path.name[6:].split(".")[0] if path.name.startswith("epoch-") else None
        if path.name.endswith(".states.npz"):  # MXNet's optimizer state: plain arrays
            with np.load(path, allow_pickle=False) as z:
                assert "num_update" in z.files and all(z[k].dtype != object for k in z.files)
            suffix = "states"
        elif suffix == "params":  # MXNet's parameters in its own array format
            assert path.read_bytes()[:8] == MXNET_ARRAYS_MAGIC, path
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
    """gunicorn over ``runs_dir`` like the Procfile's; ready once it answers anything (a 401
    included, so it also serves a token-protected dashboard). Its process group dies after."""
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
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                http(base + "/_dash-layout", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield base
    finally:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
