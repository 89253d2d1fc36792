"""Names and layout of a run directory (docs/run-directory.md): the one place they are spelled.

```
RUNS/<run-name>/run.json, classes.tsv, val_index.tsv, metrics.jsonl,
                predictions/epoch-NNNN.npz, models/epoch-NNNN.onnx, checkpoints/epoch-NNNN.*
```
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

#: the run-directory format version this package writes, and the newest it reads
SCHEMA = 1

RUN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
RUN_NAME_RE = re.compile(RUN_NAME_PATTERN)

# file names inside a run directory
RUN_JSON = "run.json"
CLASSES_TSV = "classes.tsv"
VAL_INDEX_TSV = "val_index.tsv"
METRICS = "metrics.jsonl"
HIERARCHY_TSV = "hierarchy.tsv"
THUMBNAILS = "thumbnails.bin"
LOCK = "run.lock"
PID = "trainer.pid"
TRAIN_LOG = "train.log"

# folders of per-epoch files, and the suffix each holds
PREDICTIONS = "predictions"
MODELS = "models"
CHECKPOINTS = "checkpoints"
PREDICTION_SUFFIX = ".npz"
MODEL_SUFFIX = ".onnx"

#: every fixed name the package knows (the docs test checks the reference names each)
FILE_NAMES = (
    RUN_JSON,
    CLASSES_TSV,
    VAL_INDEX_TSV,
    METRICS,
    HIERARCHY_TSV,
    THUMBNAILS,
    LOCK,
    PID,
    TRAIN_LOG,
)
FOLDERS = (PREDICTIONS, MODELS, CHECKPOINTS)

# header rows of the TSV files
CLASSES_HEADER = ("index", "wnid", "name")
VAL_INDEX_HEADER = ("row", "label", "path")
HIERARCHY_HEADER = ("id", "parent", "name")

# the suffix may have several parts: checkpoints/epoch-0001.states.npz
_EPOCH_FILE_RE = re.compile(r"epoch-(\d{4,})((?:\.[A-Za-z0-9]+)+)")


class SchemaError(ValueError):
    """A run directory written by a newer format than this package reads."""


def check_run_name(name: object) -> str:
    """``name`` when it is a valid run name, else ValueError saying what a valid one is."""
    if not isinstance(name, str) or not RUN_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' "
            "(up to 64 characters, starting with a letter or digit)"
        )
    return name


def check_schema(schema: object, where: str = "run.json") -> int:
    """The schema number of a run.json; SchemaError (one line) when it is newer than ours."""
    if schema is None:
        return SCHEMA  # runs written before the field was read
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise ValueError(f"{where}: 'schema' must be a positive integer, not {schema!r}")
    if schema > SCHEMA:
        raise SchemaError(
            f"{where} has schema {schema}, newer than the {SCHEMA} this epochscope reads: "
            "upgrade epochscope to read this run"
        )
    return schema


def check_epoch(epoch: object) -> int:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"invalid epoch {epoch!r}: epochs are integers from 1")
    return epoch


def epoch_file(epoch: int, suffix: str) -> str:
    """``epoch_file(3, ".npz")`` -> ``epoch-0003.npz`` (four digits, more when needed)."""
    return f"epoch-{check_epoch(epoch):04d}{suffix}"


def epoch_of(name: str | os.PathLike[str]) -> int | None:
    """``epoch-0012.npz`` (a name or a path) -> 12; None for any other name."""
    m = _EPOCH_FILE_RE.fullmatch(Path(name).name)
    return int(m[1]) if m and int(m[1]) >= 1 else None


def epoch_path(run_dir: str | os.PathLike[str], folder: str, epoch: int, suffix: str) -> Path:
    return Path(run_dir) / folder / epoch_file(epoch, suffix)


def predictions_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    return epoch_path(run_dir, PREDICTIONS, epoch, PREDICTION_SUFFIX)


def model_file(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    return epoch_path(run_dir, MODELS, epoch, MODEL_SUFFIX)


def epochs_in(folder: str | os.PathLike[str], suffix: str) -> list[int]:
    """Epochs that have an ``epoch-NNNN<suffix>`` file in ``folder``, ascending."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = set()
    for entry in entries:
        m = _EPOCH_FILE_RE.fullmatch(entry.name)
        if m and m[2] == suffix and int(m[1]) >= 1:
            found.add(int(m[1]))
    return sorted(found)


def safe_run_dir(runs_dir: str | os.PathLike[str], name: str) -> Path:
    """The directory of run ``name`` inside ``runs_dir``, refusing anything that could escape.

    ValueError for names that are not run names (``..``, absolute paths, separators) or that
    resolve outside ``runs_dir`` (symlinks); LookupError for a valid name with no directory.
    """
    check_run_name(name)
    root = Path(runs_dir).resolve()
    path = root / name
    try:
        # resolve() follows symlinks: a link to a folder elsewhere must not be served
        inside = path.resolve(strict=False).parent == root
    except (OSError, RuntimeError):  # a symlink loop
        raise ValueError(f"run {name!r} is a broken or looping link") from None
    if not inside:
        raise ValueError(f"run {name!r} points outside the runs directory")
    if not path.is_dir():
        raise LookupError(f"no run named {name!r} in {root}")
    return path


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of ``path`` when it is a regular file (symlinks followed).

    Opened without blocking, so a FIFO named like a run file cannot hang a reader, and refused
    when it is a FIFO, a device (a link to /dev/zero would never end) or a folder: ValueError;
    LookupError when missing (a dangling link included)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise LookupError(f"{path} does not exist") from None
    except OSError as e:  # ELOOP, EACCES, ...
        raise ValueError(f"{path} cannot be opened: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise ValueError(f"{path} cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file")
    return fd


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ValueError(f"{path} cannot be read: {e.strerror or e}") from None
    if len(data) > limit:
        raise ValueError(f"{path} is over {limit >> 20} MB")
    return data
