"""Read run directories (docs/run-directory.md): what the dashboard and notebooks see.

Pure readers. The metrics log is read incrementally: :class:`MetricsLog` keeps its byte offset
and reads only what was appended since the last poll. Any damage in one run raises LookupError
or ValueError for that run only (never RecursionError, OverflowError, csv.Error, ...), so a
caller that lists many runs can skip the bad one and keep the rest.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epochscope.layout import (
    CLASSES_HEADER,
    CLASSES_TSV,
    LOCK,
    METRICS,
    MODEL_SUFFIX,
    MODELS,
    PREDICTION_SUFFIX,
    PREDICTIONS,
    RUN_JSON,
    RUN_NAME_RE,
    VAL_INDEX_HEADER,
    VAL_INDEX_TSV,
    SchemaError,
    check_epoch,
    epochs_in,
    model_file,
    predictions_path,
    safe_run_dir,
)
from epochscope.lock import lock_is_held
from epochscope.records import EVENT_TYPES, RUNNING_STATES, RunInfo
from epochscope.tsv import read_tsv

log = logging.getLogger(__name__)

#: run.json larger than this is refused unread (it is a few KB when written by a trainer)
MAX_RUN_JSON = 4 << 20


# --- per-epoch files ---------------------------------------------------------------------------
def prediction_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with a predictions/epoch-NNNN.npz file, ascending."""
    return epochs_in(Path(run_dir) / PREDICTIONS, PREDICTION_SUFFIX)


def model_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with a models/epoch-NNNN.onnx file, ascending."""
    return epochs_in(Path(run_dir) / MODELS, MODEL_SUFFIX)


def model_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    """Path of an epoch's ONNX model; LookupError when that epoch has none."""
    path = model_file(run_dir, check_epoch(epoch))
    if not path.is_file():
        raise LookupError(f"run {Path(run_dir).name!r} has no model for epoch {epoch}")
    return path


# --- small files -------------------------------------------------------------------------------
def read_run_json(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """run.json as a plain dict; LookupError when missing, ValueError when unreadable."""
    path = Path(run_dir) / RUN_JSON
    try:
        if path.stat().st_size > MAX_RUN_JSON:
            raise ValueError(f"{path} is over {MAX_RUN_JSON >> 20} MB")
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise LookupError(f"{path} does not exist") from None
    except (ValueError, RecursionError, OSError) as e:  # JSONDecodeError, deep nesting, EACCES
        raise ValueError(f"{path} is not readable JSON: {type(e).__name__}: {e}"[:300]) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not a JSON object")
    return obj


def read_run_info(run_dir: str | os.PathLike[str]) -> RunInfo:
    """run.json as a :class:`RunInfo`; LookupError when missing, ValueError when malformed,
    SchemaError (a ValueError) when written by a newer format."""
    raw = read_run_json(run_dir)
    try:
        return RunInfo.from_dict(raw)
    except SchemaError:
        raise
    except (ValueError, TypeError, RecursionError) as e:
        raise ValueError(f"{Path(run_dir) / RUN_JSON}: {e}") from None


def read_classes(run_dir: str | os.PathLike[str]) -> list[tuple[int, str, str]]:
    """classes.tsv as [(index, wnid, name)] in index order (indices must be 0..n-1)."""
    path = Path(run_dir) / CLASSES_TSV
    rows = read_tsv(path, CLASSES_HEADER)
    if [r[0] for r in rows] != [str(i) for i in range(len(rows))]:
        raise ValueError(f"{path}: indices are not 0..{len(rows) - 1} in order")
    return [(i, wnid, name) for i, (_, wnid, name) in enumerate(rows)]


def read_val_index(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]]:
    """val_index.tsv as (labels int64 [N], paths relative to data.root)."""
    path = Path(run_dir) / VAL_INDEX_TSV
    rows = read_tsv(path, VAL_INDEX_HEADER)
    if [r[0] for r in rows] != [str(i) for i in range(len(rows))]:
        raise ValueError(f"{path}: rows are not 0..{len(rows) - 1} in order")
    try:
        labels = np.array([int(r[1]) for r in rows], dtype=np.int64)
    except (ValueError, OverflowError):
        raise ValueError(f"{path}: a label is not an integer") from None
    return labels, [r[2] for r in rows]


def load_predictions(
    run_dir: str | os.PathLike[str],
    epoch: int,
    num_rows: int | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(top5 int64 [N, 5], prob float32 [N, 5]) of an epoch, shapes and ranges checked."""
    path = predictions_path(run_dir, check_epoch(epoch))
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
    # -1 pads runs with fewer than five classes
    if num_classes is not None and top5.size and (top5.min() < -1 or top5.max() >= num_classes):
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
                try:
                    st = os.fstat(f.fileno())
                    if self.inode is not None and (
                        st.st_ino != self.inode or st.st_size < self.offset
                    ):
                        log.info("%s was truncated or replaced; reading it again", self.path)
                        self._reset()
                    self.inode = st.st_ino
                    if st.st_size == self.offset:
                        return []
                    f.seek(self.offset)
                    data = f.read(st.st_size - self.offset)
                except OSError as e:  # a directory named metrics.jsonl, EIO, ...
                    log.warning("%s cannot be read: %s", self.path, e)
                    return []
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
            event = parse_event_line(line, self.path, pos)
            if event is None:
                self.garbage_lines += line.strip() != b""
                continue
            if event["kind"] not in EVENT_TYPES and event["kind"] not in self.unknown_kinds:
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


def parse_event_line(line: bytes, path: Path | str = "", end: int = 0) -> dict[str, Any] | None:
    """One line of metrics.jsonl as an event dict, or None (logged) when it is not one."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
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
        path = Path(run_dir) / METRICS
        with self._lock:
            if path not in self._logs:
                self._logs[path] = MetricsLog(path)
            metrics = self._logs[path]
        metrics.refresh()
        return metrics


METRICS_CACHE = MetricsCache()


# --- resolving events --------------------------------------------------------------------------
def event_epoch(event: dict[str, Any]) -> int | None:
    e = event.get("epoch")
    return e if isinstance(e, int) and not isinstance(e, bool) and e >= 1 else None


def epoch_table(events: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Epoch events by epoch, ascending; for an epoch written twice (resume) the last one wins."""
    table: dict[int, dict[str, Any]] = {}
    for ev in events:
        e = event_epoch(ev)
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
    scored = [
        (e, ev[key])
        for e, ev in table.items()
        if isinstance(ev.get(key), int | float) and not isinstance(ev.get(key), bool)
    ]
    if not scored:
        return None
    return max(scored, key=lambda p: (p[1], -p[0]))[0]


def lock_held(run_dir: str | os.PathLike[str]) -> bool:
    """Whether some live process holds RUN/run.lock (a dead writer holds nothing)."""
    return lock_is_held(Path(run_dir) / LOCK)


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
    problem: str | None = None  # why run.json could not be read, when it could not

    def label(self) -> str:
        """One line for the run picker."""
        total = self.epochs_total if self.epochs_total is not None else "?"
        best = f"{self.best_val_top5:.1%}" if self.best_val_top5 is not None else "-"
        return (
            f"{self.name} · {self.state} · {self.engine} {self.arch} · "
            f"epoch {self.epochs_done}/{total} · best val top-5 {best}"
        )


def summarize_run(run_dir: Path, cache: MetricsCache = METRICS_CACHE) -> RunSummary:
    info: RunInfo | None = None
    problem = None
    try:
        info = read_run_info(run_dir)
    except (LookupError, ValueError) as e:
        problem = str(e)
    events = cache.get(run_dir).events
    table = epoch_table(events)
    best = best_epoch(table)
    status = last_status(events)
    state = run_state(run_dir, events)
    return RunSummary(
        name=run_dir.name,
        state=state,
        engine=info.engine if info else "?",
        arch=info.arch if info else "?",
        epochs_done=max(table, default=0),
        epochs_total=info.epochs if info and info.epochs else None,
        best_val_top5=float(table[best]["val_top5"]) if best is not None else None,
        best_epoch=best,
        started=info.started if info and info.started else None,
        error=str(status.get("error"))[:500] if state == "failed" and status else None,
        problem=problem,
    )


def list_runs(
    runs_dir: str | os.PathLike[str], cache: MetricsCache = METRICS_CACHE
) -> list[RunSummary]:
    """Every run in ``runs_dir`` (folders with a valid name and run.json), newest first."""
    root = Path(runs_dir)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    runs = []
    for entry in entries:
        if not RUN_NAME_RE.fullmatch(entry.name):
            continue  # dot names are temporaries; other names are not runs
        try:
            run_dir = safe_run_dir(root, entry.name)
            if (run_dir / RUN_JSON).is_file():
                runs.append(summarize_run(run_dir, cache))
        except (ValueError, LookupError, OSError) as e:
            log.warning("skipping %s: %s", entry.name, e)
    return sorted(runs, key=lambda r: (-(r.started or 0.0), r.name))
