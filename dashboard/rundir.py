"""Read run directories (docs/run-directory.md): the dashboard's only source of data.

Pure readers with no Dash in them, shared by every page. The metrics log is read incrementally:
``MetricsLog`` keeps its byte offset and reads only what was appended since the last poll.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EPOCH_FILE_RE = re.compile(r"epoch-(\d{4,})\.(npz|onnx)")
RUNNING_STATES = ("started", "resumed")
KNOWN_KINDS = frozenset({"status", "step", "epoch", "device", "warning"})


# --- names and paths ---------------------------------------------------------------------------
def safe_run_dir(runs_dir: str | os.PathLike[str], name: str) -> Path:
    """The directory of run ``name`` inside ``runs_dir``, refusing anything that could escape.

    Raises ValueError for names that are not valid run names (``..``, absolute paths, path
    separators, symlinks pointing outside ``runs_dir``) and LookupError for a valid name with
    no run directory.
    """
    if not isinstance(name, str) or not RUN_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid run name {name!r}: expected [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}")
    root = Path(runs_dir).resolve()
    path = root / name
    # resolve() follows symlinks: a link to a folder elsewhere must not be served
    if path.resolve().parent != root:
        raise ValueError(f"run {name!r} points outside the runs directory")
    if not path.is_dir():
        raise LookupError(f"no run named {name!r} in {root}")
    return path


def _epoch_files(folder: Path, suffix: str) -> list[int]:
    if not folder.is_dir():
        return []
    epochs = []
    for entry in os.scandir(folder):
        m = EPOCH_FILE_RE.fullmatch(entry.name)
        if m and m.group(2) == suffix and int(m.group(1)) >= 1:
            epochs.append(int(m.group(1)))
    return sorted(epochs)


def _epoch_path(run_dir: Path, folder: str, epoch: int, suffix: str) -> Path:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"invalid epoch {epoch!r}: epochs are integers from 1")
    return Path(run_dir) / folder / f"epoch-{epoch:04d}.{suffix}"


def prediction_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with a predictions/epoch-NNNN.npz file, ascending."""
    return _epoch_files(Path(run_dir) / "predictions", "npz")


def model_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with a models/epoch-NNNN.onnx file, ascending."""
    return _epoch_files(Path(run_dir) / "models", "onnx")


def model_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    """Path of an epoch's ONNX model; LookupError when that epoch has none."""
    path = _epoch_path(Path(run_dir), "models", epoch, "onnx")
    if not path.is_file():
        raise LookupError(f"run {Path(run_dir).name!r} has no model for epoch {epoch}")
    return path


# --- small files -------------------------------------------------------------------------------
def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """run.json as a dict; LookupError when missing, ValueError when not a JSON object."""
    path = Path(run_dir) / "run.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LookupError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not a JSON object")
    return info


def _read_tsv(path: Path, header: list[str]) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except FileNotFoundError:
        raise LookupError(f"{path} does not exist") from None
    if not rows or rows[0] != header:
        raise ValueError(f"{path}: expected the header {'<TAB>'.join(header)}")
    body = rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{n}: expected {len(header)} columns, got {len(row)}")
    return body


def read_classes(run_dir: str | os.PathLike[str]) -> list[tuple[int, str, str]]:
    """classes.tsv as [(index, wnid, name)] in index order (indices must be 0..n-1)."""
    path = Path(run_dir) / "classes.tsv"
    rows = _read_tsv(path, ["index", "wnid", "name"])
    out = [(int(i), wnid, name) for i, wnid, name in rows]
    if [i for i, _, _ in out] != list(range(len(out))):
        raise ValueError(f"{path}: indices are not 0..{len(out) - 1} in order")
    return out


def read_val_index(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]]:
    """val_index.tsv as (labels int64 [N], paths relative to data.root)."""
    path = Path(run_dir) / "val_index.tsv"
    rows = _read_tsv(path, ["row", "label", "path"])
    if [int(r[0]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: rows are not 0..{len(rows) - 1} in order")
    labels = np.array([int(r[1]) for r in rows], dtype=np.int64)
    return labels, [r[2] for r in rows]


def load_predictions(
    run_dir: str | os.PathLike[str],
    epoch: int,
    num_rows: int | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(top5 int64 [N, 5], prob float32 [N, 5]) of an epoch, shapes and ranges checked."""
    path = _epoch_path(Path(run_dir), "predictions", epoch, "npz")
    if not path.is_file():
        raise LookupError(f"run {Path(run_dir).name!r} has no predictions for epoch {epoch}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "top5" not in npz or "prob" not in npz:
                raise ValueError(f"{path}: expected arrays 'top5' and 'prob'")
            top5, prob = npz["top5"], npz["prob"]
    except FileNotFoundError:  # removed since the check above
        raise LookupError(f"run {Path(run_dir).name!r} has no epoch {epoch} predictions") from None
    except Exception as e:  # a torn or foreign file: BadZipFile, EOFError, pickled objects, ...
        log.warning("%s does not load: %s: %s", path, type(e).__name__, e)
        raise ValueError(f"{path} is not a readable predictions file: {e}") from None
    if top5.ndim != 2 or top5.shape[1] != 5 or prob.shape != top5.shape:
        raise ValueError(f"{path}: top5 {top5.shape} and prob {prob.shape} must both be [N, 5]")
    if not np.issubdtype(top5.dtype, np.integer) or not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"{path}: top5 must be integers and prob floats")
    if num_rows is not None and top5.shape[0] != num_rows:
        raise ValueError(f"{path}: {top5.shape[0]} rows, expected {num_rows}")
    if num_classes is not None and top5.size and (top5.min() < 0 or top5.max() >= num_classes):
        raise ValueError(f"{path}: class indices outside 0..{num_classes - 1}")
    return top5.astype(np.int64), prob.astype(np.float32)


# --- metrics.jsonl, read incrementally ---------------------------------------------------------
@dataclass
class MetricsLog:
    """The events of one metrics.jsonl, kept up to date by reading only appended bytes.

    ``events[i]`` ends at byte ``ends[i]`` of the file. ``generation`` changes whenever the
    file was truncated or replaced and reading started again from byte 0.
    """

    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    offset: int = 0  # bytes consumed, the partial tail included
    partial: bytes = b""  # an unfinished last line, completed by a later read
    inode: int | None = None
    generation: int = 0
    garbage_lines: int = 0
    unknown_kinds: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _reset(self) -> None:
        self.events, self.ends = [], []
        self.offset, self.partial = 0, b""
        self.generation += 1

    def refresh(self) -> list[dict[str, Any]]:
        """Read what was appended since the last call; returns the new complete events."""
        with self.lock:
            try:
                f = self.path.open("rb")
            except OSError as e:  # deleted, or not a readable file: read as empty
                if not isinstance(e, FileNotFoundError):
                    log.warning("%s cannot be read: %s", self.path, e)
                if self.events or self.offset:
                    self._reset()
                self.inode = None
                return []
            with f:
                st = os.fstat(f.fileno())
                if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
                    log.info("%s was truncated or replaced; reading it again", self.path)
                    self._reset()
                self.inode = st.st_ino
                if st.st_size == self.offset:
                    return []
                f.seek(self.offset)
                data = f.read(st.st_size - self.offset)
            return self._consume(data)

    def _consume(self, data: bytes) -> list[dict[str, Any]]:
        start = self.offset - len(self.partial)
        self.offset += len(data)
        chunk = self.partial + data
        lines = chunk.split(b"\n")
        self.partial = lines.pop()  # b"" when the chunk ended with a newline
        new = []
        pos = start
        for line in lines:
            pos += len(line) + 1
            event = _parse_line(line, self.path, pos)
            if event is None:
                self.garbage_lines += line.strip() != b""
                continue
            if event["kind"] not in KNOWN_KINDS and event["kind"] not in self.unknown_kinds:
                self.unknown_kinds.add(event["kind"])  # warned once per kind and file
                log.warning("%s: ignoring events of unknown kind %r", self.path, event["kind"])
            self.events.append(event)
            self.ends.append(pos)
            new.append(event)
        return new

    def since(self, position: int) -> tuple[list[dict[str, Any]], bool, int]:
        """Events after byte ``position``, whether it is a known line end, and the new end.

        A client that was sent events up to ``position`` asks for the rest; ``False`` means its
        position does not belong to this file (truncated or replaced) and it must start over,
        with all events. The third value is the position to ask from next time.
        """
        with self.lock:
            end = self.ends[-1] if self.ends else 0
            if position == 0:
                return list(self.events), True, end
            i = _bisect(self.ends, position)
            if i == 0 or self.ends[i - 1] != position:
                return list(self.events), False, end
            return self.events[i:], True, end

    def upto(self, position: int) -> list[dict[str, Any]]:
        """The events that end at or before byte ``position`` (what a client was sent)."""
        with self.lock:
            return self.events[: _bisect(self.ends, position)]

    @property
    def position(self) -> int:
        """Byte offset just after the last complete event read."""
        return self.ends[-1] if self.ends else 0


def _bisect(values: list[int], x: int) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _parse_line(line: bytes, path: Path, end: int) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s: skipping a line that is not JSON (ending at byte %d)", path, end)
        return None
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        log.warning("%s: skipping a line without a 'kind' (ending at byte %d)", path, end)
        return None
    return event


class MetricsCache:
    """One MetricsLog per metrics.jsonl path, shared by every browser this process serves."""

    def __init__(self) -> None:
        self._logs: dict[Path, MetricsLog] = {}
        self._lock = threading.Lock()

    def get(self, run_dir: str | os.PathLike[str]) -> MetricsLog:
        path = Path(run_dir) / "metrics.jsonl"
        with self._lock:
            if path not in self._logs:
                self._logs[path] = MetricsLog(path)
            metrics = self._logs[path]
        metrics.refresh()
        return metrics


METRICS = MetricsCache()


# --- resolving events --------------------------------------------------------------------------
def _epoch_of(event: dict[str, Any]) -> int | None:
    e = event.get("epoch")
    return e if isinstance(e, int) and not isinstance(e, bool) and e >= 1 else None


def epoch_table(events: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Epoch events by epoch, ascending; for an epoch written twice (resume) the last one wins."""
    table: dict[int, dict[str, Any]] = {}
    for ev in events:
        e = _epoch_of(ev)
        if ev.get("kind") == "epoch" and e is not None:
            table[e] = ev
    return dict(sorted(table.items()))


def last_status(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    status = None
    for ev in events:
        if ev.get("kind") == "status" and isinstance(ev.get("state"), str):
            status = ev
    return status


def best_epoch(table: dict[int, dict[str, Any]], key: str = "val_top5") -> int | None:
    """The epoch with the highest ``key`` (the earliest on ties), or None."""
    scored = [(e, ev[key]) for e, ev in table.items() if isinstance(ev.get(key), int | float)]
    if not scored:
        return None
    return max(scored, key=lambda p: (p[1], -p[0]))[0]


def lock_held(run_dir: str | os.PathLike[str]) -> bool:
    """Whether some live process holds run.lock (a dead trainer holds nothing)."""
    path = Path(run_dir) / "run.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        # a fresh fd of our own: flock on it conflicts with the trainer's lock only
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def run_state(run_dir: str | os.PathLike[str], events: Iterable[dict[str, Any]]) -> str:
    """running, finished, failed or stopped (running only while run.lock is held)."""
    status = last_status(events)
    state = status["state"] if status else "started"
    if state in RUNNING_STATES:
        return "running" if lock_held(run_dir) else "stopped"
    return state if state in ("finished", "failed", "stopped") else "stopped"


@dataclass(frozen=True)
class RunSummary:
    name: str
    state: str
    engine: str
    arch: str
    epochs_done: int
    epochs_total: int | None
    best_val_top5: float | None
    best_epoch: int | None
    started: float | None
    error: str | None = None

    def label(self) -> str:
        """One line for the run picker."""
        total = self.epochs_total if self.epochs_total is not None else "?"
        best = f"{self.best_val_top5:.1%}" if self.best_val_top5 is not None else "-"
        return (
            f"{self.name} · {self.state} · {self.engine} {self.arch} · "
            f"epoch {self.epochs_done}/{total} · best val top-5 {best}"
        )


def summarize_run(run_dir: Path, cache: MetricsCache = METRICS) -> RunSummary:
    try:
        info = read_run_info(run_dir)
    except (LookupError, ValueError):
        info = {}
    events = cache.get(run_dir).events
    table = epoch_table(events)
    best = best_epoch(table)
    status = last_status(events)
    state = run_state(run_dir, events)
    started = info.get("started")
    return RunSummary(
        name=run_dir.name,
        state=state,
        engine=str(info.get("engine", "?")),
        arch=str(info.get("arch", "?")),
        epochs_done=max(table, default=0),
        epochs_total=info.get("epochs") if isinstance(info.get("epochs"), int) else None,
        best_val_top5=table[best]["val_top5"] if best is not None else None,
        best_epoch=best,
        started=float(started) if isinstance(started, int | float) else None,
        error=str(status.get("error")) if state == "failed" and status else None,
    )


def list_runs(runs_dir: str | os.PathLike[str], cache: MetricsCache = METRICS) -> list[RunSummary]:
    """Every run in ``runs_dir`` (folders with a valid name and run.json), newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not RUN_NAME_RE.fullmatch(entry.name):
            continue  # dot names are temporaries; other names are not runs
        try:
            run_dir = safe_run_dir(root, entry.name)
        except (ValueError, LookupError):
            continue
        if (run_dir / "run.json").is_file():
            runs.append(summarize_run(run_dir, cache))
    return sorted(runs, key=lambda r: (-(r.started or 0.0), r.name))
