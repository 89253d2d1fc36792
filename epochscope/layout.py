"""Names and layout of a run directory (docs/run-directory.md): the one place they are spelled.

```
RUNS/<run-name>/run.json, classes.tsv, val_index.tsv, train_index.tsv, metrics.jsonl,
                predictions/epoch-NNNN.npz, embeddings/epoch-NNNN.npz, models/epoch-NNNN.onnx,
                train_stats/epoch-NNNN.npz, checkpoints/epoch-NNNN.*
```
"""

from __future__ import annotations

import errno
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
TRAIN_INDEX_TSV = "train_index.tsv"
LABEL_EDITS_TSV = "label_edits.tsv"
METRICS = "metrics.jsonl"
HIERARCHY_TSV = "hierarchy.tsv"
THUMBNAILS = "thumbnails.bin"
LOCK = "run.lock"
PID = "trainer.pid"
TRAIN_LOG = "train.log"

# folders of per-epoch files, and the suffix each holds
PREDICTIONS = "predictions"
MODELS = "models"
EMBEDDINGS = "embeddings"
CHECKPOINTS = "checkpoints"
TRAIN_STATS = "train_stats"
PREDICTION_SUFFIX = ".npz"
MODEL_SUFFIX = ".onnx"
EMBEDDING_SUFFIX = ".npz"
TRAIN_STATS_SUFFIX = ".npz"

#: every fixed name the package knows (the docs test checks the reference names each)
FILE_NAMES = (
    RUN_JSON,
    CLASSES_TSV,
    VAL_INDEX_TSV,
    TRAIN_INDEX_TSV,
    LABEL_EDITS_TSV,
    METRICS,
    HIERARCHY_TSV,
    THUMBNAILS,
    LOCK,
    PID,
    TRAIN_LOG,
)
FOLDERS = (PREDICTIONS, EMBEDDINGS, MODELS, CHECKPOINTS, TRAIN_STATS)

# header rows of the TSV files
CLASSES_HEADER = ("index", "wnid", "name")
VAL_INDEX_HEADER = ("row", "label", "path")
TRAIN_INDEX_HEADER = VAL_INDEX_HEADER  # the same columns, training order
LABEL_EDITS_HEADER = ("row", "edit", "label", "from")
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


def embeddings_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    return epoch_path(run_dir, EMBEDDINGS, epoch, EMBEDDING_SUFFIX)


def train_stats_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    return epoch_path(run_dir, TRAIN_STATS, epoch, TRAIN_STATS_SUFFIX)


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


# --- the bounded reader: every byte read from a run directory goes through here -----------------
MIB = 1 << 20
DEMO_MARKER = "demo.json"  # under a dataset's root, written last by make-demo-data

#: the largest file of each kind a reader opens (docs/run-directory.md, "Read limits"); a larger
#: one is refused unread with a ValueError naming the file and the limit
CAPS: dict[str, int] = {
    RUN_JSON: 4 * MIB,
    CLASSES_TSV: 16 * MIB,
    VAL_INDEX_TSV: 64 * MIB,
    TRAIN_INDEX_TSV: 256 * MIB,  # ImageNet's 1.28 M paths: about 60 MB
    LABEL_EDITS_TSV: 64 * MIB,
    HIERARCHY_TSV: 16 * MIB,
    METRICS: 4 * MIB,  # one line: the file itself is read in chunks, a longer line is skipped
    f"{PREDICTIONS}/epoch-NNNN{PREDICTION_SUFFIX}": 256 * MIB,
    f"{EMBEDDINGS}/epoch-NNNN{EMBEDDING_SUFFIX}": 1024 * MIB,
    f"{TRAIN_STATS}/epoch-NNNN{TRAIN_STATS_SUFFIX}": 128 * MIB,  # 1.28 M images: 7.7 MB
    f"{MODELS}/epoch-NNNN{MODEL_SUFFIX}": 1024 * MIB,
    THUMBNAILS: 4096 * MIB,  # read by seeking to one image, never whole
    DEMO_MARKER: 1 * MIB,
}
#: metrics.jsonl is read this many bytes at a time
METRICS_CHUNK = 1 * MIB


def cap_of(path: str | os.PathLike[str]) -> int:
    """The size cap of a run-directory file, by its name (epoch files by their folder)."""
    p = Path(path)
    if p.name in CAPS:
        return CAPS[p.name]
    if epoch_of(p) is not None:
        key = f"{p.parent.name}/epoch-NNNN{p.suffix}"
        if key in CAPS:
            return CAPS[key]
    raise KeyError(f"no read limit for {p.name!r}")


def _size_text(n: int) -> str:
    return f"{n / MIB:g} MiB" if n < 1024 * MIB else f"{n / (1024 * MIB):g} GiB"


def inside_run(path: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> str:
    """The real path of ``path`` (links followed) when it stays inside the real ``run_dir``;
    ValueError when a link leads out of it (a copied-in run must not read the machine)."""
    try:
        real = os.path.realpath(path, strict=False)
        root = os.path.realpath(run_dir, strict=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} cannot be resolved: {e}") from None
    if os.path.commonpath([real, root]) != root:
        raise ValueError(f"{path} is a link that leads out of its run directory: refused")
    return real


def _no_link_below(path: str | os.PathLike[str], within: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``within``/a/b/file with no folder a, a/b that is a link (the
    file itself is checked by O_NOFOLLOW): no resolving needed. One lstat per folder level,
    none for a file directly in the run directory."""
    try:
        rel = Path(path).relative_to(within)
    except ValueError:
        return False
    if ".." in rel.parts:
        return False
    folder = Path(within)
    for part in rel.parts[:-1]:
        folder = folder / part
        try:
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                return False
        except OSError:
            return False
    return True


def open_regular(path: str | os.PathLike[str], within: str | os.PathLike[str] | None = None) -> int:
    """A read-only descriptor of ``path`` when it is a regular file (symlinks followed).

    Opened without blocking, so a FIFO named like a run file cannot hang a reader, and refused
    when it is a FIFO, a device (a link to /dev/zero would never end) or a folder: ValueError;
    LookupError when missing (a dangling link included). With ``within`` (the run directory),
    a path whose links lead out of that folder is refused (ValueError) and the resolved path is
    opened with O_NOFOLLOW, so a link swapped in after the check is refused too."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    target: str | os.PathLike[str] = path
    if within is not None:
        flags |= os.O_NOFOLLOW
        if not _no_link_below(path, within):  # some link on the way: where does it lead?
            target = inside_run(path, within)
    try:
        try:
            fd = os.open(target, flags)
        except OSError as e:
            if e.errno != errno.ELOOP or target != path:
                raise
            # the file itself is a link: open where it leads when that stays inside the run
            fd = os.open(inside_run(path, within), flags)  # type: ignore[arg-type]
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


def check_size(path: str | os.PathLike[str], size: int, limit: int) -> None:
    if size > limit:
        raise ValueError(
            f"{path} is {_size_text(size)}, over the {_size_text(limit)} a reader accepts for "
            f"{Path(path).name}: not read (docs/run-directory.md, Read limits)"
        )


def read_regular(
    path: str | os.PathLike[str],
    limit: int | None = None,
    within: str | os.PathLike[str] | None = None,
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default: the cap of its kind,
    :data:`CAPS`), refused unread when larger (see :func:`open_regular`)."""
    if limit is None:
        limit = cap_of(path)
    with os.fdopen(open_regular(path, within), "rb") as f:
        try:
            size = os.fstat(f.fileno()).st_size
            check_size(path, size, limit)
            # no buffer of the cap's size: the stat'ed size, then chunks while it grows
            parts, total, want = [], 0, size + 1
            while total <= limit and (part := f.read(min(want, limit + 1 - total))):
                parts.append(part)
                total += len(part)
                want = METRICS_CHUNK
        except OSError as e:
            raise ValueError(f"{path} cannot be read: {e.strerror or e}") from None
    check_size(path, total, limit)  # grew since the stat
    return b"".join(parts)
