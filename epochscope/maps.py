"""Embedding-map layouts, computed once per epoch and kept outside the run directory.

A 50,000-point layout takes a minute or more, so it is computed once and cached as a file per
(run, epoch, embeddings file): ``<cache>/<run name>/map-epoch-NNNN-<key>.npy``, float32 [N, 2],
where ``<key>`` hashes the run's path, the embeddings file's inode, size and mtime, and
:data:`~epochscope.analysis.embedding_map.LAYOUT_VERSION`. A rewritten epoch or a new layout
recipe gets a new file; the old one of that epoch is removed.

``<cache>`` is $EPOCHSCOPE_CACHE_DIR, else ``.epochscope-cache`` beside the run directories
(not a valid run name, so never listed as a run), else, when that folder cannot be written (a
read-only runs folder), a folder in the system's temporary directory. Run directories are never
written: they may be read-only, synced, or copied in.

Whenever a layout is written, the cache beside RUNS drops the folders of runs no longer in
RUNS (:func:`prune`): a layout is written once per epoch, so this costs a directory listing per
epoch. A cache given by $EPOCHSCOPE_CACHE_DIR, or in the temporary directory, may serve several
runs folders under the same run names, so it is never pruned.

Exactly one process computes a layout: an exclusive ``flock`` on ``<file>.lock`` is taken
before computing and the cache is looked at again once it is held, so a second gunicorn worker
(or a notebook) asking meanwhile waits and then reads what the first wrote, and
:func:`computing` tells a view to show "computing" instead of waiting. Files are written
atomically and read back bounded (size, dtype, shape checked; a damaged file is computed again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from epochscope.analysis.embedding_map import LAYOUT_VERSION, layout
from epochscope.layout import embeddings_path, read_regular
from epochscope.lock import lock_is_held
from epochscope.writer import atomic_write

if TYPE_CHECKING:
    from epochscope.run import Run

log = logging.getLogger(__name__)

CACHE_ENV = "EPOCHSCOPE_CACHE_DIR"
MAP_POINTS_ENV = "EPOCHSCOPE_MAP_MAX_POINTS"
#: the most images one layout places (ImageNet's validation set is 50,000; TensorBoard's
#: projector loads at most 100,000): a run copied in with millions is refused, not laid out
MAX_MAP_POINTS = int(os.environ.get(MAP_POINTS_ENV, "200000"))
CACHE_FOLDER = ".epochscope-cache"
#: bytes of a .npy header at most (numpy pads it to 64 or 128 bytes)
_NPY_HEADER = 4096


def cache_root(run_dir: str | os.PathLike[str]) -> Path:
    """Where the run's cached layouts live (see the module's doc)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env)
    beside = Path(run_dir).resolve().parent / CACHE_FOLDER
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK | os.X_OK):
            return beside
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"epochscope-cache-{os.getuid()}"


def layout_key(run_dir: str | os.PathLike[str], epoch: int) -> str | None:
    """What identifies an epoch's layout: None when the epoch has no embeddings file."""
    try:
        st = os.stat(embeddings_path(run_dir, epoch))
    except OSError:
        return None
    ident = f"{Path(run_dir).resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{LAYOUT_VERSION}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def layout_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    """The cache file of an epoch's layout; LookupError when the epoch has no embeddings."""
    key = layout_key(run_dir, epoch)
    if key is None:
        raise LookupError(f"run {Path(run_dir).name!r} has no embeddings for epoch {epoch}")
    return cache_root(run_dir) / Path(run_dir).name / f"map-epoch-{epoch:04d}-{key}.npy"


def read_layout(path: Path, rows: int) -> np.ndarray | None:
    """float32 [rows, 2] from a cached layout file; None when missing or not that (logged)."""
    try:
        data = read_regular(path, limit=_NPY_HEADER + rows * 2 * 4)
    except LookupError:
        return None
    except ValueError as e:
        log.warning("cached layout %s ignored: %s", path, e)
        return None
    try:
        coords = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # torn or foreign
        log.warning("cached layout %s ignored: %s: %s", path, type(e).__name__, e)
        return None
    if coords.dtype != np.float32 or coords.shape != (rows, 2) or not np.isfinite(coords).all():
        log.warning("cached layout %s ignored: %s %s", path, coords.dtype, coords.shape)
        return None
    return coords


def cached(run: Run, epoch: int) -> np.ndarray | None:
    """An epoch's layout when some process already computed it; never computes."""
    return read_layout(layout_path(run.path, epoch), len(run.labels))


def computing(run: Run, epoch: int) -> bool:
    """Whether some process (this one included) is computing the epoch's layout now."""
    return lock_is_held(_lock_path(layout_path(run.path, epoch)))


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".npy") + ".lock")


def ensure(run: Run, epoch: int, wait: bool = True) -> tuple[np.ndarray | None, bool]:
    """(layout float32 [N, 2], whether this call computed it) of an epoch: read from the cache,
    else computed under the lock (see the module's doc). With ``wait=False``, (None, False) at
    once while another process computes it."""
    path = layout_path(run.path, epoch)
    rows = len(run.labels)
    if (coords := read_layout(path, rows)) is not None:
        return coords, False
    if rows > MAX_MAP_POINTS:  # hours of a worker's CPU: refused, not queued behind other runs
        raise ValueError(
            f"run {run.name!r} has {rows:,} validation images; the map lays out at most "
            f"{MAX_MAP_POINTS:,} ({MAP_POINTS_ENV} raises it)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None, False
            raise
        # whoever held the lock before us may have written it meanwhile
        if (coords := read_layout(path, rows)) is not None:
            return coords, False
        coords = layout(run.embeddings(epoch).vectors)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(coords, dtype=np.float32), allow_pickle=False)
        atomic_write(path, buf.getvalue())
        _remove_stale(path, epoch)
        prune(run.path)
        return coords, True
    finally:
        os.close(fd)  # drops the lock


def _remove_stale(path: Path, epoch: int) -> None:
    """Older layouts of the same epoch (its file was rewritten, or the recipe changed)."""
    for old in path.parent.glob(f"map-epoch-{epoch:04d}-*"):
        if old.name != path.name and not old.name.endswith(".lock"):
            with contextlib.suppress(OSError):
                old.unlink()


def prune(run_dir: str | os.PathLike[str]) -> list[str]:
    """Remove the cached layouts of runs that are no longer in ``run_dir``'s runs folder (the
    names removed); only the cache beside that folder, which holds nothing else."""
    runs = Path(run_dir).resolve().parent
    root = cache_root(run_dir)
    if root != runs / CACHE_FOLDER:
        return []
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        gone = not os.path.lexists(runs / entry.name)
        # a folder of ours (not a link): a run computing a layout has its directory in RUNS
        if gone and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    if removed:
        log.info("layout cache: removed the layouts of %d runs no longer in %s", len(removed), runs)
    return removed
