"""The run-directory writer: the only code that writes the contract of docs/run-directory.md.

Every file is written atomically (temporary name, fsync, ``os.replace``, folder fsync);
metrics.jsonl gets whole lines from single ``write`` calls on an O_APPEND descriptor, and an
``epoch`` or ``status`` line is fsync'ed before the call returns (a step line is not: they come
often and losing the last few to a power cut costs nothing). Rank 0 of a distributed job uses
:class:`RunWriter`; every other rank gets :class:`NullWriter`, so no call site asks its rank.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from epochscope import faults
from epochscope.embeddings import Embeddings
from epochscope.layout import (
    CLASSES_HEADER,
    CLASSES_TSV,
    EMBEDDING_SUFFIX,
    EMBEDDINGS,
    LOCK,
    METRICS,
    MODEL_SUFFIX,
    MODELS,
    PID,
    PREDICTION_SUFFIX,
    PREDICTIONS,
    RUN_JSON,
    TRAIN_INDEX_HEADER,
    TRAIN_INDEX_TSV,
    TRAIN_STATS,
    TRAIN_STATS_SUFFIX,
    VAL_INDEX_HEADER,
    VAL_INDEX_TSV,
    epoch_file,
    epoch_of,
    epochs_in,
)
from epochscope.lock import RunLock, RunLockedError, read_pid
from epochscope.predictions import LABEL_ARRAYS, pad5
from epochscope.records import EVENT_TYPES, Event, RunInfo
from epochscope.training_stats import STATS_ARRAYS
from epochscope.tsv import tsv_bytes

#: event kinds whose line is fsync'ed: losing one would lose an epoch or a run's final state
DURABLE_KINDS = frozenset({"epoch", "status"})


def fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the folder's entry is on disk
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` so that ``path`` never holds a partial file, even after kill -9."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_save(path, save)


def atomic_save(path: str | os.PathLike[str], save: Callable[[Path], None]) -> None:
    """:func:`atomic_write` for libraries that only write to a file name (MXNet's
    ``save_parameters``): ``save(tmp)`` writes the temporary file, the rest is the same."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        faults.check_disk()
        save(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        faults.before_replace(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def truncate_partial_line(path: str | os.PathLike[str]) -> int:
    """Cut a last line that has no newline (a write torn by a crash); returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos, keep = size, 0  # scan backwards in blocks for the last newline
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def event_line(kind: str, epoch: int, fields: dict[str, Any]) -> bytes:
    record = {"kind": kind, "time": round(time.time(), 3), "epoch": epoch, **fields}
    return (json.dumps(record, allow_nan=False, default=_jsonable) + "\n").encode()


def prune_epochs(folder: Path, suffix: str, keep: int, protect: int | None = None) -> list[Path]:
    """Delete the oldest ``epoch-NNNN<suffix>`` files beyond ``keep`` (never epoch ``protect``)."""
    files = [folder / epoch_file(e, suffix) for e in epochs_in(folder, suffix)]
    excess = len(files) - keep
    removed = [p for p in files if epoch_of(p) != protect][: max(0, excess)]
    for p in removed:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return removed


class RunWriter:
    """Writes one run directory (rank 0 only). ``acquire`` first, ``close`` at the end."""

    enabled = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        bucket: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """``root``: the run directory. ``bucket``: a runs-folder URL (s3://...) the run is
        uploaded to as it is written, ``root`` being its local staging copy."""
        self.root = Path(root)
        self._lock = RunLock(self.root / LOCK)
        self._events_fd: int | None = None
        self._events_mutex = threading.Lock()  # a device sampler writes from its own thread
        self._created = False
        self.bucket = bucket
        self._storage_options = storage_options
        self._upload: Any = None  # a storage.upload.BackgroundUpload while writing to a bucket

    # --- ownership --------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take run.lock (RunLockedError when a live writer holds it), then tidy what a killed
        predecessor may have left: temporaries and a torn last line of metrics.jsonl."""
        self._created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        for tmp in self.root.rglob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        truncate_partial_line(self.root / METRICS)
        if self.bucket is not None:
            try:
                self._start_upload()
            except BaseException:
                self._lock.release()
                raise

    def _start_upload(self) -> None:
        """Become the run's one writer in the bucket and start sending it up."""
        from epochscope.storage import StorageError
        from epochscope.storage.store import open_store
        from epochscope.storage.upload import BackgroundUpload, RunLeaseError, Upload

        store = open_store(self.bucket, self._storage_options)  # type: ignore[arg-type]
        upload = Upload(self.root, store, self.root.name)
        try:
            upload.acquire()
        except RunLeaseError as e:
            raise RunLockedError(str(e)) from None
        except OSError as e:  # no bucket, no credentials, no network: say so before training
            raise StorageError(f"cannot write to {store.shown}: {type(e).__name__}: {e}") from None
        self._upload = BackgroundUpload(upload)
        self._upload.start()

    def start_over(self) -> None:
        """The run is being replaced (its files cleared): so is its copy in the bucket."""
        if self._upload is not None:
            self._upload.upload.start_over()

    def _poke(self) -> None:
        if self._upload is not None:
            self._upload.poke()

    def close(self) -> None:
        with self._events_mutex:
            if self._events_fd is not None:
                os.close(self._events_fd)
                self._events_fd = None
        if self._upload is not None:
            self._upload.finish()
            self._upload = None
        self._lock.release()
        # a run that failed before writing anything leaves no empty folder behind
        if self._created and [p.name for p in self.root.iterdir()] == [LOCK]:
            with contextlib.suppress(OSError):
                (self.root / LOCK).unlink()
                self.root.rmdir()

    # --- whole files ------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.root / name
        atomic_write(path, data)
        self._poke()
        return path

    def write_file(self, name: str, save: Callable[[Path], None]) -> Path:
        """A file that ``save(path)`` writes by name, made atomic (see :func:`atomic_save`)."""
        path = self.root / name
        atomic_save(path, save)
        self._poke()
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        text = json.dumps(obj, indent=2, allow_nan=False, default=_jsonable) + "\n"
        return self.write_bytes(name, text.encode())

    def write_tsv(self, name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
        return self.write_bytes(name, tsv_bytes(header, rows))

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.write_bytes(name, buf.getvalue())

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / name).unlink()
        self._poke()

    # --- the contract's files -----------------------------------------------------------------
    def write_run_info(self, info: RunInfo) -> Path:
        return self.write_json(RUN_JSON, info.to_dict())

    def write_classes(self, wnids: Sequence[str], names: Sequence[str]) -> Path:
        if len(wnids) != len(names):
            raise ValueError(f"{len(wnids)} class ids but {len(names)} names")
        rows = ([i, w, n] for i, (w, n) in enumerate(zip(wnids, names, strict=True)))
        return self.write_tsv(CLASSES_TSV, CLASSES_HEADER, rows)

    def write_val_index(self, samples: Sequence[tuple[str, int]]) -> Path:
        """``samples``: (path relative to data.root, true class index), in validation order."""
        rows = ([i, label, path] for i, (path, label) in enumerate(samples))
        return self.write_tsv(VAL_INDEX_TSV, VAL_INDEX_HEADER, rows)

    def write_train_index(self, samples: Sequence[tuple[str, int]]) -> Path:
        """``samples``: (path relative to data.root, the label trained on), in the training
        order whose indices the train_stats files use."""
        rows = ([i, label, path] for i, (path, label) in enumerate(samples))
        return self.write_tsv(TRAIN_INDEX_TSV, TRAIN_INDEX_HEADER, rows)

    def write_train_stats(self, epoch: int, stats: dict[str, np.ndarray]) -> Path:
        """An epoch's per-image training statistics in the stored form of
        :func:`epochscope.training_stats.dense` (``p_label``, ``margin``, ``other``)."""
        arrays = {k: np.asarray(stats[k]) for k in STATS_ARRAYS}
        if len({a.shape for a in arrays.values()}) != 1 or arrays["p_label"].ndim != 1:
            shapes = [list(a.shape) for a in arrays.values()]
            raise ValueError(f"train stats {shapes}: expected one [N] array each")
        return self.write_npz(f"{TRAIN_STATS}/{epoch_file(epoch, TRAIN_STATS_SUFFIX)}", **arrays)

    def write_predictions(
        self, epoch: int, top5: np.ndarray, prob: np.ndarray, **label_stats: np.ndarray
    ) -> Path:
        """An epoch's top-k class indices and probabilities, best first, k <= 5 (padded), and
        optionally what :func:`epochscope.predictions.label_stats` computed from the full
        logits (per image float32 ``[N]`` arrays and the 0-d ``temperature``)."""
        top5, prob = np.asarray(top5), np.asarray(prob)
        if top5.ndim != 2 or top5.shape != prob.shape or top5.shape[1] > 5:
            raise ValueError(f"top5 {top5.shape} and prob {prob.shape} must both be [N, k<=5]")
        extra = {}
        for name, value in label_stats.items():
            value = np.asarray(value, dtype=np.float32)
            scalar = name == "temperature" and value.shape == ()
            if scalar or (name in LABEL_ARRAYS and value.shape == (len(top5),)):
                extra[name] = value
            else:
                raise ValueError(
                    f"predictions array {name!r} {list(value.shape)}: expected one of "
                    f"{', '.join(LABEL_ARRAYS)} as [{len(top5)}] or a scalar temperature"
                )
        return self.write_npz(
            f"{PREDICTIONS}/{epoch_file(epoch, PREDICTION_SUFFIX)}",
            top5=pad5(top5, -1).astype(np.int16),
            prob=pad5(prob, 0.0).astype(np.float16),
            **extra,
        )

    def write_embeddings(self, epoch: int, embeddings: Embeddings) -> Path:
        """An epoch's validation embeddings (:func:`epochscope.embeddings.embed` of the
        penultimate features, rows in val_index.tsv order)."""
        return self.write_npz(
            f"{EMBEDDINGS}/{epoch_file(epoch, EMBEDDING_SUFFIX)}", **embeddings.arrays()
        )

    def write_model(self, epoch: int, onnx: bytes) -> Path:
        return self.write_bytes(f"{MODELS}/{epoch_file(epoch, MODEL_SUFFIX)}", onnx)

    # --- events -----------------------------------------------------------------------------
    def event(self, kind: str | Event, epoch: int | None = None, **fields: Any) -> dict[str, Any]:
        """Append one event to metrics.jsonl as a single complete line; returns the record.

        ``event(EpochEvent(...))`` or ``event("epoch", 3, val_top5=...)``."""
        if isinstance(kind, Event):
            kind, epoch, fields = kind.kind, kind.epoch, {**kind.fields(), **fields}
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event kind {kind!r}: one of {sorted(EVENT_TYPES)}")
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"event epoch must be an integer >= 0, not {epoch!r}")
        line = event_line(kind, epoch, fields)
        with self._events_mutex:
            if self._events_fd is None:
                self._events_fd = os.open(
                    self.root / METRICS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
            faults.check_disk(for_events=True)
            # one write on an O_APPEND descriptor: a reader sees the whole line or none of it
            written = os.write(self._events_fd, line)
            while written < len(line):  # a short write (signal, nearly full disk): finish it
                written += os.write(self._events_fd, line[written:])
            if kind in DURABLE_KINDS:
                os.fsync(self._events_fd)
        if kind != "step":  # steps ride along with the next pass (a heartbeat at the latest)
            self._poke()
        return json.loads(line)

    # --- background pid -----------------------------------------------------------------------
    def remove_pid_if_mine(self) -> None:
        if read_pid(self.root / PID) == os.getpid():
            self.remove(PID)


class NullWriter:
    """What non-zero ranks get: the same calls, writing nothing."""

    enabled = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
