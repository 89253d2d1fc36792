"""Read run directories (docs/run-directory.md): what the dashboard and notebooks see.

Pure readers. The metrics log is read incrementally: :class:`MetricsLog` keeps its byte offset
and reads only what was appended since the last poll. Any damage in one run raises LookupError
or ValueError for that run only (never RecursionError, OverflowError, csv.Error, ...), so a
caller that lists many runs can skip the bad one and keep the rest.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epochscope.embeddings import MAX_DIMS, MAX_FEATURES, Embeddings, Projection
from epochscope.events import (  # re-exported: readers of events import them from here too
    MAX_EPOCH,
    best_epoch,  # noqa: F401
    epoch_table,  # noqa: F401
    event_epoch,
    last_status,
)
from epochscope.layout import (
    CAPS,
    CLASSES_HEADER,
    CLASSES_TSV,
    DEMO_MARKER,
    EMBEDDING_SUFFIX,
    EMBEDDINGS,
    LABEL_EDITS_HEADER,
    LABEL_EDITS_TSV,
    LOCK,
    METRICS,
    METRICS_CHUNK,
    MODEL_SUFFIX,
    MODELS,
    PREDICTION_SUFFIX,
    PREDICTIONS,
    RUN_JSON,
    RUN_NAME_RE,
    TRAIN_INDEX_TSV,
    VAL_INDEX_HEADER,
    VAL_INDEX_TSV,
    SchemaError,
    cap_of,
    check_epoch,
    check_size,
    embeddings_path,
    epochs_in,
    model_file,
    open_regular,
    predictions_path,
    read_regular,
    safe_run_dir,
    train_stats_path,
)
from epochscope.lock import lock_is_held
from epochscope.predictions import LABEL_ARRAYS
from epochscope.records import EVENT_TYPES, RUNNING_STATES, RunInfo, RunSummary, clean_number
from epochscope.storage.state import bucket_writer_alive
from epochscope.training_stats import STATS_ARRAYS
from epochscope.tsv import SpanStrings, parse_tsv, plain_spans, read_tsv, span_uints

log = logging.getLogger(__name__)

#: run.json larger than this is refused unread (it is a few KB when written by a trainer)
MAX_RUN_JSON = CAPS[RUN_JSON]
#: the most rows a predictions file may declare (when the run's row count is not known)
MAX_PREDICTION_ROWS = 4_000_000


# --- per-epoch files ---------------------------------------------------------------------------
def prediction_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with a predictions/epoch-NNNN.npz file, ascending."""
    return epochs_in(Path(run_dir) / PREDICTIONS, PREDICTION_SUFFIX)


def model_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with a models/epoch-NNNN.onnx file, ascending."""
    return epochs_in(Path(run_dir) / MODELS, MODEL_SUFFIX)


def embedding_epochs(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs with an embeddings/epoch-NNNN.npz file, ascending."""
    return epochs_in(Path(run_dir) / EMBEDDINGS, EMBEDDING_SUFFIX)


def model_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    """Path of an epoch's ONNX model; LookupError when that epoch has none."""
    path = model_file(run_dir, check_epoch(epoch))
    if not path.is_file():
        raise LookupError(f"run {Path(run_dir).name!r} has no model for epoch {epoch}")
    return path


# --- small files -------------------------------------------------------------------------------
def is_synthetic_dataset(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` is a dataset made by ``make-demo-data``: its demo.json marker says
    ``"synthetic": true``. Recorded in run.json as ``data.synthetic`` so that a reader (the
    classifier page) can say the model has never seen a photo, even without the data. Read
    through the bounded reader (a FIFO or a link to /dev/zero named demo.json is no marker)."""
    try:
        marker = json.loads(read_regular(Path(root) / DEMO_MARKER))
    except (LookupError, ValueError, RecursionError):
        return False
    return isinstance(marker, dict) and marker.get("synthetic") is True


def read_run_json(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """run.json as a plain dict; LookupError when missing, ValueError when unreadable."""
    path = Path(run_dir) / RUN_JSON
    data = read_regular(path, MAX_RUN_JSON, within=run_dir)  # not a FIFO, /dev/zero, a link out
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, deep nesting, EACCES
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
    rows = read_tsv(path, CLASSES_HEADER, within=run_dir)
    if [r[0] for r in rows] != [str(i) for i in range(len(rows))]:
        raise ValueError(f"{path}: indices are not 0..{len(rows) - 1} in order")
    return [(i, wnid, name) for i, (_, wnid, name) in enumerate(rows)]


def read_val_index(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]]:
    """val_index.tsv as (labels int64 [N], paths relative to data.root)."""
    labels, paths = _read_index(run_dir, VAL_INDEX_TSV)
    return labels, list(paths)


def read_train_index(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, Sequence[str]]:
    """train_index.tsv as (labels trained on, int64 [N], paths relative to data.root, decoded
    when indexed); LookupError for a run that wrote none (no training statistics)."""
    return _read_index(run_dir, TRAIN_INDEX_TSV)  # the bounded reader: LookupError if missing


def read_threshold_samples(run_dir: str | os.PathLike[str]) -> np.ndarray:
    """The training rows trained as AUM's threshold samples (label_edits.tsv's ``threshold``
    rows), ascending; empty for a run without them (or without label_edits.tsv)."""
    try:
        rows = read_tsv(Path(run_dir) / LABEL_EDITS_TSV, LABEL_EDITS_HEADER, within=run_dir)
    except LookupError:
        return np.zeros(0, np.int64)
    try:
        return np.array(sorted(int(r[0]) for r in rows if r[1] == "threshold"), np.int64)
    except ValueError:
        raise ValueError(f"{run_dir}/{LABEL_EDITS_TSV}: a row is not an integer") from None


def _read_index(run_dir: str | os.PathLike[str], name: str) -> tuple[np.ndarray, Sequence[str]]:
    """(labels, paths) of val_index.tsv or train_index.tsv. A plain file (no quoting) is read
    with numpy over its bytes and its paths decoded when asked (ImageNet's 1.28 M training rows:
    about 0.1 s instead of 2.3 s); anything else, or anything that numpy's reading would not
    take exactly as written, goes through csv and int() with their messages."""
    path = Path(run_dir) / name
    data = read_regular(path, cap_of(path), within=run_dir)
    spans = plain_spans(data, len(VAL_INDEX_HEADER))
    if spans is not None and len(spans):
        head = [data[a:b].decode("utf-8", "replace") for a, b in spans[0]]
        rows, labels = span_uints(data, spans[1:, 0]), span_uints(data, spans[1:, 1])
        if (head == list(VAL_INDEX_HEADER) and rows is not None and labels is not None
                and (rows == np.arange(len(rows))).all()):  # fmt: skip
            try:
                data.decode("utf-8")  # every path decodes later
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} is not a readable TSV file: {e}") from None
            return labels, SpanStrings(data, spans[1:, 2])
    table = parse_tsv(path, data, VAL_INDEX_HEADER)
    if [r[0] for r in table] != [str(i) for i in range(len(table))]:
        raise ValueError(f"{path}: rows are not 0..{len(table) - 1} in order")
    try:
        numbers = np.array([int(r[1]) for r in table], dtype=np.int64)
    except (ValueError, OverflowError):
        raise ValueError(f"{path}: a label is not an integer") from None
    return numbers, [r[2] for r in table]


@contextlib.contextmanager
def _epoch_npz(run_dir: str | os.PathLike[str], path: Path, what: str, epoch: int):
    """An epoch's npz as a ZipFile, opened once through the bounded reader (never a FIFO, a
    device or a link out of the run; the file's size cap checked first). LookupError when it
    is missing; a torn or foreign file becomes one ValueError naming it; a ValueError raised
    inside (a refused header) is logged and passes through."""
    try:  # one open, no stat first
        f = os.fdopen(open_regular(path, within=run_dir), "rb")
    except LookupError:
        name = Path(run_dir).name
        raise LookupError(f"run {name!r} has no {what} for epoch {epoch}") from None
    try:
        with f:
            check_size(path, os.fstat(f.fileno()).st_size, cap_of(path))
            with zipfile.ZipFile(f) as z:
                yield z
    except ValueError as e:  # refused before anything was inflated
        log.warning("%s does not load: %s", path, e)
        raise
    except Exception as e:  # a torn or foreign file: BadZipFile, EOFError, pickled objects, ...
        log.warning("%s does not load: %s: %s", path, type(e).__name__, e)
        raise ValueError(f"{path} is not a readable {what} file: {e}") from None


def load_predictions(
    run_dir: str | os.PathLike[str],
    epoch: int,
    num_rows: int | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(top5 int64 [N, 5], prob float32 [N, 5]) of an epoch, shapes and ranges checked."""
    path = predictions_path(run_dir, check_epoch(epoch))
    most = num_rows if num_rows is not None else MAX_PREDICTION_ROWS
    with _epoch_npz(run_dir, path, "predictions", epoch) as z:
        top5 = _npy_member(z, "top5", path, most)
        prob = _npy_member(z, "prob", path, most)
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


def _npy_header(z: zipfile.ZipFile, key: str, path: Path) -> tuple[zipfile.ZipInfo, tuple, Any]:
    """(member, shape, dtype) of array ``key`` of an npz, from its .npy header alone: numbers
    of at most 8 bytes, and a member exactly as large as the header says. Nothing inflated."""
    name = key + ".npy"
    if name not in z.namelist():
        raise ValueError(f"{path}: expected an array {key!r}")
    info = z.getinfo(name)
    with z.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{path}: {name} has .npy format {version}, not 1.0 or 2.0")
        header = member.tell()
    if dtype.hasobject or dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise ValueError(f"{path}: {key} holds {dtype}, not integers or floats of up to 8 bytes")
    if info.file_size != header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ValueError(f"{path}: {name} is {info.file_size} bytes, not what its header says")
    return info, shape, dtype


def _npy_read(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with z.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _npy_member(z: zipfile.ZipFile, key: str, path: Path, most: int) -> np.ndarray:
    """Array ``key`` (top5 or prob) of a predictions npz, its .npy header checked before any
    data is inflated: [N, 5] with N <= ``most`` rows."""
    if key + ".npy" not in z.namelist():
        raise ValueError(f"{path}: expected arrays 'top5' and 'prob'")
    info, shape, _dtype = _npy_header(z, key, path)
    if len(shape) != 2 or shape[1] != 5:
        raise ValueError(f"{path}: {key} is {list(shape)}, must be [N, 5]")
    if shape[0] > most:
        raise ValueError(f"{path}: {key} declares {shape[0]:,} rows, more than {most:,}")
    return _npy_read(z, info)


def load_embeddings(
    run_dir: str | os.PathLike[str], epoch: int, num_rows: int | None = None
) -> Embeddings:
    """An epoch's stored embeddings (``vectors`` float16 [N, D], the projection's ``mean``
    [F] and ``components`` [D, F]), each header checked before anything is inflated: D at most
    :data:`embeddings.MAX_DIMS`, F at most :data:`embeddings.MAX_FEATURES`, N the validation
    images'. LookupError when the epoch has none."""
    path = embeddings_path(run_dir, check_epoch(epoch))
    most = num_rows if num_rows is not None else MAX_PREDICTION_ROWS
    with _epoch_npz(run_dir, path, "embeddings", epoch) as z:
        members = {k: _npy_header(z, k, path) for k in ("vectors", "mean", "components")}
        (_, vs, _), (_, ms, _), (_, cs, _) = members.values()
        if len(vs) != 2 or not 1 <= vs[1] <= MAX_DIMS or vs[0] > most:
            raise ValueError(f"{path}: vectors {list(vs)} must be [N <= {most:,}, D <= {MAX_DIMS}]")
        if num_rows is not None and vs[0] != num_rows:
            raise ValueError(f"{path}: {vs[0]} vectors, expected {num_rows}")
        if len(ms) != 1 or not 1 <= ms[0] <= MAX_FEATURES or cs != (vs[1], ms[0]):
            raise ValueError(
                f"{path}: mean {list(ms)} and components {list(cs)} must be [F] and "
                f"[{vs[1]}, F] with F <= {MAX_FEATURES}"
            )
        arrays = {k: _npy_read(z, info) for k, (info, _, _) in members.items()}
    projection = Projection(
        arrays["mean"].astype(np.float32), arrays["components"].astype(np.float32)
    )
    return Embeddings(arrays["vectors"].astype(np.float16, copy=False), projection)


def load_label_stats(
    run_dir: str | os.PathLike[str], epoch: int, num_rows: int | None = None
) -> dict[str, np.ndarray] | None:
    """The arrays an epoch's predictions file holds beside top5 and prob for label issues and
    calibration (``p_label``, ``margin``, ``entropy``, ``confidence``, ``confidence_scaled``:
    float32 [N]; ``temperature``: 0-d float32), or None when the file has none of them (written
    before they existed: :data:`LABEL_STATS_MISSING` says so to a user). Only these arrays are
    read; a file with some of them, or with wrong shapes or values, is refused."""
    path = predictions_path(run_dir, check_epoch(epoch))
    names = (*LABEL_ARRAYS, "temperature")
    most = num_rows if num_rows is not None else MAX_PREDICTION_ROWS
    with _epoch_npz(run_dir, path, "predictions", epoch) as z:
        present = [n for n in names if n + ".npy" in z.namelist()]
        if not present:
            return None
        if len(present) != len(names):
            missing = ", ".join(n for n in names if n not in present)
            raise ValueError(f"{path}: label arrays incomplete, missing {missing}")
        members = {n: _npy_header(z, n, path) for n in names}
        for name, (_, shape, _) in members.items():  # one per image, a 0-d temperature
            if name == "temperature":
                if shape != ():
                    raise ValueError(f"{path}: temperature {list(shape)} must be one number")
            elif len(shape) != 1 or shape[0] > most or (num_rows is not None and shape[0] != most):
                raise ValueError(f"{path}: {name} {list(shape)} must be {most} floats")
        arrays = {n: _npy_read(z, info) for n, (info, _, _) in members.items()}
    n = len(arrays["p_label"]) if num_rows is None else num_rows
    for name in LABEL_ARRAYS:
        a = arrays[name]
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{path}: {name} {list(a.shape)} must be {n} floats")
        arrays[name] = a.astype(np.float32, copy=False)
    t = arrays["temperature"]
    # NaN: no validation image had finite logits (a diverged model), nothing to fit
    if t.shape != () or not np.issubdtype(t.dtype, np.floating) or float(t) <= 0:
        raise ValueError(f"{path}: temperature must be one positive number, not {t!r}")
    arrays["temperature"] = t.astype(np.float32)
    return arrays


def load_train_stats(
    run_dir: str | os.PathLike[str], epoch: int, num_rows: int, num_classes: int
) -> dict[str, np.ndarray]:
    """An epoch's per-image training statistics (docs/run-directory.md, train_stats/):
    ``p_label`` and ``margin`` float32 [N] (NaN: not seen that epoch), ``other`` int64 [N]
    (-1: not seen), N the rows of train_index.tsv; headers checked before anything is
    inflated, values checked after. LookupError when the epoch has none."""
    path = train_stats_path(run_dir, check_epoch(epoch))
    with _epoch_npz(run_dir, path, "training statistics", epoch) as z:
        members = {}
        for name in STATS_ARRAYS:
            info, shape, dtype = _npy_header(z, name, path)
            kind = "i" if name == "other" else "f"
            if shape != (num_rows,) or dtype.kind not in ("iu" if kind == "i" else "f"):
                want = "integers" if kind == "i" else "floats"
                raise ValueError(f"{path}: {name} {list(shape)} must be {num_rows:,} {want}")
            members[name] = info
        arrays = {n: _npy_read(z, info) for n, info in members.items()}
    other = arrays["other"].astype(np.int64)
    if other.size and (other.min() < -1 or other.max() >= num_classes):
        raise ValueError(f"{path}: other holds classes outside 0..{num_classes - 1}")
    p_label = arrays["p_label"].astype(np.float32)
    with np.errstate(invalid="ignore"):
        if np.any((p_label < 0) | (p_label > 1)):
            raise ValueError(f"{path}: p_label holds values outside 0..1")
    return {"p_label": p_label, "margin": arrays["margin"].astype(np.float32), "other": other}


def train_stats_row(
    run_dir: str | os.PathLike[str], epoch: int, row: int, num_rows: int
) -> dict[str, float | int]:
    """One training image's statistics of an epoch (``p_label``, ``margin``: NaN, ``other``:
    -1 when not seen), read from the file without inflating its arrays (a click on the data
    map of 1.28 M images reads a few bytes an epoch, not 7.7 MB)."""
    path = train_stats_path(run_dir, check_epoch(epoch))
    if not 0 <= row < num_rows:
        raise ValueError(f"training image {row} is outside 0..{num_rows - 1}")
    out: dict[str, float | int] = {}
    with _epoch_npz(run_dir, path, "training statistics", epoch) as z:
        for name in STATS_ARRAYS:
            info, shape, dtype = _npy_header(z, name, path)
            if shape != (num_rows,):
                raise ValueError(f"{path}: {name} {list(shape)} must be {num_rows:,} values")
            start = info.file_size - num_rows * dtype.itemsize  # the header's end
            with z.open(info) as member:
                member.seek(start + row * dtype.itemsize)
                value = np.frombuffer(member.read(dtype.itemsize), dtype=dtype)[0]
            out[name] = int(value) if name == "other" else float(value)
    return out


#: what a view says about an epoch whose predictions file lacks the label arrays
LABEL_STATS_MISSING = (
    "this epoch's predictions file has no label scores or temperature: it was written before "
    "Epochscope stored them; epochs trained or logged since have them"
)


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
    partial: bytes = b""  # an unfinished last line (at most MAX_LINE), completed by a later read
    skipping: bool = False  # inside a line over MAX_LINE bytes: dropped up to its newline
    inode: int | None = None
    generation: int = 0
    garbage_lines: int = 0
    unknown_kinds: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _reset(self) -> None:
        self.events, self.ends = [], []
        self.offset, self.partial, self.skipping = 0, b"", False
        self.generation += 1

    def refresh(self) -> list[dict[str, Any]]:
        """Read what was appended since the last call; returns the new complete events."""
        with self.lock:
            try:
                # never a FIFO, a device or a link out of the run
                fd = open_regular(self.path, within=self.path.parent)
                f = os.fdopen(fd, "rb", buffering=0)  # unbuffered: _hole moves the descriptor
            except (LookupError, ValueError) as e:  # deleted, or not a readable file: empty
                if not isinstance(e, LookupError):
                    log.warning("%s", e)
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
                    new: list[dict[str, Any]] = []
                    for begin, data in _chunks(f, self, st.st_size):
                        new += self._consume(data, begin)
                    return new
                except OSError as e:  # a directory named metrics.jsonl, EIO, ...
                    log.warning("%s cannot be read: %s", self.path, e)
                    return []

    def _consume(self, data: bytes, begin: int) -> list[dict[str, Any]]:
        block, pos, skipped = _complete_lines(self, data, begin)
        if skipped:
            self.garbage_lines += 1
            log.warning("%s: skipping a line over %d bytes (ending at byte %d)",
                        self.path, MAX_LINE, skipped)  # fmt: skip
        new = []
        for line in block.split(b"\n")[:-1]:
            pos += len(line) + 1
            try:
                event = None if len(line) > MAX_LINE else parse_event_line(line, self.path, pos)
            except Exception as e:  # whatever one line does, the rest of the chunk is kept
                log.warning("%s: skipping a line that does not parse (ending at byte %d): %s: %s",
                            self.path, pos, type(e).__name__, str(e)[:200])  # fmt: skip
                event = None
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


#: the longest line of metrics.jsonl kept: a longer one (or an unterminated tail that grows past
#: it) is dropped up to its newline and counted as garbage
MAX_LINE = CAPS[METRICS]


def _chunks(f: Any, state: Any, end: int) -> Iterator[tuple[int, bytes]]:
    """(first byte, bytes) of the unbuffered file ``f``, positioned at ``state.offset``, up to
    ``end`` in chunks of at most METRICS_CHUNK (a huge file never sits in memory), moving
    ``state.offset`` past each. While ``state.skipping`` (inside a line too long to keep, which
    the caller updates from each chunk before asking for the next), a hole of a sparse file is
    stepped over unread: it holds no newline."""
    while state.offset < end:
        if state.skipping and (hole := _hole(f, state.offset, end)):
            state.offset += hole
            continue
        data = f.read(min(METRICS_CHUNK, end - state.offset))
        if not data:
            return
        begin = state.offset
        state.offset += len(data)
        yield begin, data


def _complete_lines(state: Any, data: bytes, begin: int) -> tuple[bytes, int, int]:
    """Split the next ``data`` of a file (starting at byte ``begin``) for a reader holding
    ``state.partial`` (the unterminated tail, never over MAX_LINE) and ``state.skipping``.

    Returns the complete lines it finishes (ending in a newline, or b""), the byte at which
    they start, and, when a line too long to keep ended here, the byte after it (else 0)."""
    ended = 0
    if state.skipping:
        nl = data.find(b"\n")
        if nl < 0:
            return b"", begin + len(data), 0
        state.skipping = False
        data, begin = data[nl + 1 :], begin + nl + 1
        ended = begin
    start = begin - len(state.partial)
    cut = data.rfind(b"\n") + 1
    if cut:
        block, tail = state.partial + data[:cut], data[cut:]
    else:
        block, tail = b"", state.partial + data
    if len(tail) > MAX_LINE:
        state.skipping, tail = True, b""
    state.partial = tail
    return block, start, ended


def _hole(f: Any, pos: int, end: int) -> int:
    """How many bytes from ``pos`` are a hole of a sparse file (zeros, so no newline), with
    the unbuffered file ``f`` moved past them; 0 when ``pos`` holds data or the file system
    cannot say (then the bytes are read as any others)."""
    try:
        data = os.lseek(f.fileno(), pos, os.SEEK_DATA)
    except OSError as e:  # ENXIO: a hole up to the end; EINVAL: not supported
        data = end if e.errno == errno.ENXIO else pos
    data = min(max(data, pos), end)
    f.seek(data)
    return data - pos


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
    """One MetricsLog per metrics.jsonl path, shared by every browser this process serves.

    Bounded: the ``size`` logs used last are kept (EPOCHSCOPE_METRICS_CACHE_RUNS, default 64);
    an evicted log is read again from byte 0 when asked for, with the same byte positions, so a
    browser's state stays valid."""

    def __init__(self, size: int | None = None) -> None:
        if size is None:
            try:
                size = int(os.environ.get("EPOCHSCOPE_METRICS_CACHE_RUNS", "64"))
            except ValueError:
                size = 64
        self.size = max(1, size)
        self._logs: OrderedDict[Path, MetricsLog] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_dir: str | os.PathLike[str]) -> MetricsLog:
        path = Path(run_dir) / METRICS
        with self._lock:
            metrics = self._logs.get(path)
            if metrics is None:
                metrics = self._logs[path] = MetricsLog(path)
            self._logs.move_to_end(path)
            while len(self._logs) > self.size:
                self._logs.popitem(last=False)
        metrics.refresh()
        return metrics

    def __len__(self) -> int:
        return len(self._logs)


def lock_held(run_dir: str | os.PathLike[str]) -> bool:
    """Whether some live process holds RUN/run.lock (a dead writer holds nothing); for a run
    mirrored from a bucket, whether its writer's heartbeat there is fresh."""
    # the lock first: a local run (the common case) costs one open, not a missing state file's
    if lock_is_held(Path(run_dir) / LOCK):
        return True
    return bool(bucket_writer_alive(run_dir))  # None: not a mirror, and no one holds its lock


def run_state(run_dir: str | os.PathLike[str], events: Iterable[dict[str, Any]]) -> str:
    """running, finished, failed, stopped or crashed (running only while run.lock is held;
    crashed: the last status says running but no process holds the lock, so the writer died
    without writing how it ended)."""
    status = last_status(events)
    state = status["state"] if status else "started"
    if state in RUNNING_STATES:
        return "running" if lock_held(run_dir) else "crashed"
    return state if state in ("finished", "failed", "stopped") else "stopped"


def arch_label(info: RunInfo) -> str:
    """The architecture as the run picker shows it: ``resnet18_v2 x0.25 small stem`` (width and
    a stem other than ImageNet's only when the run says so)."""
    label = info.arch
    if info.width != 1.0:
        label += f" x{info.width:g}"
    stem = info.hparams.get("stem")
    if isinstance(stem, str) and stem not in ("imagenet", "auto", ""):
        label += f" {stem[:40]} stem"
    return label


# --- run summaries, cached per run and refreshed only when its files change -------------------
def _signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None when there is none: what says it changed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


#: the writer's step and device lines: most of a log, and nothing a summary shows
_SKIP_PREFIXES = (b'{"kind": "step", ', b'{"kind": "device", ')
_READ_PREFIXES = (b'{"kind": "epoch", ', b'{"kind": "status", ')


def _summary_lines(body: bytes) -> list[bytes]:
    """The complete lines of ``body`` a summary must read: all but the writer's step and
    device lines. When every line is one of the writer's four kinds (counted in C), only the
    epoch and status lines are cut out; otherwise every line is looked at."""
    marked = b"\n" + body
    out = []
    for prefix in _READ_PREFIXES:
        at = marked.find(b"\n" + prefix)
        while at >= 0:
            stop = marked.find(b"\n", at + 1)
            out.append(marked[at + 1 : stop])
            at = marked.find(b"\n" + prefix, stop)
    skipped = sum(marked.count(b"\n" + p) for p in _SKIP_PREFIXES)
    if skipped + len(out) != body.count(b"\n"):  # some line is not the writer's: look at all
        return [x for x in body.split(b"\n") if x and not x.startswith(_SKIP_PREFIXES)]
    return out  # epochs then statuses: each kind stays in file order, which is all that counts


#: the writer's epoch line (epochscope.writer.event_line): epoch and val_top5 read without a
#: full JSON parse, when each key appears once; any other line goes through json
_EPOCH_LINE = re.compile(rb'^\{"kind": "epoch", "time": [^,]*, "epoch": (\d{1,7}), ')
_VAL_TOP5 = re.compile(rb'"val_top5": (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|null)[,}]')


@dataclass
class _Digest:
    """What a summary needs from metrics.jsonl, read incrementally and kept without events:
    val_top5 per epoch (last event wins) and the last status."""

    signature: tuple[int, int, int] | None = None
    offset: int = 0
    partial: bytes = b""
    skipping: bool = False
    val_top5: dict[int, float | None] = field(default_factory=dict)
    state: str | None = None
    error: str | None = None

    def refresh(self, path: Path, signature: tuple[int, int, int] | None) -> None:
        if signature == self.signature:
            return
        if signature is None or (
            self.signature is not None
            and (signature[0] != self.signature[0] or signature[1] < self.offset)
        ):  # gone, replaced or truncated: start again
            self.__init__()  # type: ignore[misc]
        self.signature = signature
        if signature is None:
            return
        try:
            with os.fdopen(open_regular(path, within=path.parent), "rb", buffering=0) as f:
                f.seek(self.offset)
                for begin, data in _chunks(f, self, signature[1]):
                    self._digest(path, _complete_lines(self, data, begin)[0])
        except (LookupError, ValueError, OSError):
            return

    def _digest(self, path: Path, block: bytes) -> None:
        for line in _summary_lines(block):
            if (fast := _EPOCH_LINE.match(line)) and line.endswith(b"}"):
                values = _VAL_TOP5.findall(line)
                if len(values) == 1 and line.count(b'"epoch": ') == 1:
                    e = int(fast.group(1))
                    if 1 <= e <= MAX_EPOCH:
                        v = None if values[0] == b"null" else float(values[0])
                        self.val_top5[e] = clean_number(v)
                    continue
            try:
                event = parse_event_line(line, path)
            except Exception:  # one bad line spoils nothing else
                continue
            if event is None:
                continue
            kind = event["kind"]
            if kind == "epoch" and (e := event_epoch(event)) is not None:
                self.val_top5[e] = clean_number(event.get("val_top5"))
            elif kind == "status" and isinstance(event.get("state"), str):
                self.state = event["state"][:40]
                error = event.get("error")
                self.error = str(error)[:500] if error is not None else None


@dataclass
class _CachedRun:
    info_signature: tuple[int, int, int] | None = None
    info: RunInfo | None = None
    problem: str | None = None
    digest: _Digest = field(default_factory=_Digest)
    summary: RunSummary | None = None
    summary_key: tuple | None = None


class SummaryCache:
    """Per-run summaries for the run picker, refreshed only when run.json or metrics.jsonl
    changed (inode, size, mtime): a warm poll over 1,000 runs costs two stats per run (and a
    lock probe for runs whose last status says they run), never a re-read. Bounded to
    ``size`` runs, least recently listed dropped first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._runs: OrderedDict[Path, _CachedRun] = OrderedDict()
        self._lock = threading.Lock()

    def summary(self, run_dir: Path) -> RunSummary | None:
        """The run's summary; None when it has no run.json (not a run)."""
        info_sig = _signature(run_dir / RUN_JSON)
        if info_sig is None:
            return None
        with self._lock:
            cached = self._runs.get(run_dir)
            if cached is None:
                cached = self._runs[run_dir] = _CachedRun()
            self._runs.move_to_end(run_dir)
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)
        if cached.info_signature != info_sig:
            try:
                cached.info, cached.problem = read_run_info(run_dir), None
            except (LookupError, ValueError) as e:
                cached.info, cached.problem = None, str(e)
            cached.info_signature = info_sig
        digest = cached.digest
        digest.refresh(run_dir / METRICS, _signature(run_dir / METRICS))
        key = (info_sig, digest.signature)
        if cached.summary is None or cached.summary_key != key or digest.state in RUNNING_STATES:
            # only a run whose log says it runs is probed again (its lock) with no file change
            cached.summary = make_summary(
                run_dir, cached.info, cached.problem, digest.val_top5, digest.state, digest.error
            )
            cached.summary_key = key
        return cached.summary

    def info(self, run_dir: Path) -> RunInfo | None:
        """The run.json a summary was last made from (read only when it changed), or None."""
        cached = self._runs.get(run_dir)
        return cached.info if cached is not None else None

    def __len__(self) -> int:
        return len(self._runs)


def make_summary(
    run_dir: Path,
    info: RunInfo | None,
    problem: str | None,
    val_top5: dict[int, float | None],
    state: str | None,
    error: str | None,
) -> RunSummary:
    """The one way a run's picker line is built, from run.json and what its log says (val
    top-5 per epoch, the last status): by :class:`SummaryCache` from its digest, and by
    ``epochscope.Run.summary`` from the whole log."""
    scored = [(e, v) for e, v in val_top5.items() if v is not None]
    best = max(scored, key=lambda p: (p[1], -p[0]))[0] if scored else None
    state = state or "started"
    if state in RUNNING_STATES:
        state = "running" if lock_held(run_dir) else "crashed"  # the only per-poll probe
    elif state not in ("finished", "failed", "stopped"):
        state = "stopped"
    return RunSummary(
        name=run_dir.name,
        state=state,
        engine=info.engine if info else "?",
        arch=arch_label(info) if info else "?",
        epochs_done=max(val_top5, default=0),
        epochs_total=info.epochs if info and info.epochs else None,
        best_val_top5=val_top5[best] if best is not None else None,
        best_epoch=best,
        started=info.started if info and info.started else None,
        error=error if state == "failed" else None,
        problem=problem,
        excluded=info.data.excluded if info else 0,
        relabelled=info.data.relabelled if info else 0,
    )


class _Candidates:
    """The folder names of RUNS that may be runs, listed again only when RUNS itself changed
    (a run added, removed, renamed or replaced by a link changes the folder's mtime). Kept for
    the last few roots only (a provider asks for its one root)."""

    ROOTS = 4

    def __init__(self) -> None:
        self._by_root: OrderedDict[Path, tuple[tuple[int, int, int], list[Path]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, root: Path) -> list[Path]:
        sig = _signature(root)
        if sig is None:
            return []
        with self._lock:
            hit = self._by_root.get(root)
        if hit is not None and hit[0] == sig:
            return hit[1]
        try:
            names = sorted(e.name for e in os.scandir(root))
        except OSError:
            return []
        found = []
        for name in names:
            if not RUN_NAME_RE.fullmatch(name):
                continue  # dot names are temporaries; other names are not runs
            try:
                found.append(safe_run_dir(root, name))
            except Exception as e:  # a looping or outside link: not a run
                log.debug("skipping %s: %s", name, e)
        with self._lock:
            self._by_root[root] = (sig, found)
            self._by_root.move_to_end(root)
            while len(self._by_root) > self.ROOTS:
                self._by_root.popitem(last=False)
        return found


def list_runs(
    runs_dir: str | os.PathLike[str],
    summaries: SummaryCache | None = None,
    candidates: _Candidates | None = None,
) -> list[RunSummary]:
    """Every run in ``runs_dir`` (folders with a valid name and run.json), newest first.

    Summaries come from ``summaries``, cached per run (see :class:`SummaryCache`); without
    one (a notebook, a test) each call reads afresh. ``epochscope.Runs`` keeps both caches."""
    root = Path(runs_dir)
    summaries = SummaryCache() if summaries is None else summaries
    candidates = _Candidates() if candidates is None else candidates
    runs = []
    for run_dir in candidates.get(root):
        try:
            if (summary := summaries.summary(run_dir)) is not None:
                runs.append(summary)
        except Exception as e:  # one damaged run, whatever the damage, hides only itself
            log.warning("skipping %s: %s: %s", run_dir.name, type(e).__name__, str(e)[:300])
    return sorted(runs, key=lambda r: (-(r.started or 0.0), r.name))
