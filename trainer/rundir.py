"""The run-directory writer: the only code that writes the contract of docs/run-directory.md.

Every file is written atomically (temporary name, fsync, ``os.replace``, folder fsync);
metrics.jsonl gets whole lines from single ``write`` calls on an O_APPEND descriptor. Rank 0 of
a distributed job uses :class:`RunWriter`; every other rank gets :class:`NullWriter`, so no call
site needs to ask which rank it is on.

Fault injection for the crash and disk-fault tests (docs/reliability.md), inert unless the
environment variable ``EPOCHSCOPE_FAULT`` is set to one of:

- ``kill-before-replace:GLOB``: SIGKILL this process once the temporary file of a path matching
  ``*/GLOB`` (for example ``models/epoch-0002.onnx``) is written, just before ``os.replace``;
- ``delay:SECONDS``: sleep between writing a temporary file and renaming it (a wider window
  for random kills to land in);
- ``enospc-after:N``: the Nth atomic write of this process and every later one raise
  ``OSError(ENOSPC)``, as on a full disk; ``enospc-all-after:N`` fails event appends too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import io
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
METRICS = "metrics.jsonl"
LOCK = "run.lock"
PID = "trainer.pid"
FAULT_ENV = "EPOCHSCOPE_FAULT"
_writes = 0  # atomic writes attempted by this process, for enospc-after:N


class RunLockedError(RuntimeError):
    """Another live process holds the run's lock."""


def check_run_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' "
            "(up to 64 characters, starting with a letter or digit)"
        )
    return name


def epoch_file(epoch: int, suffix: str) -> str:
    return f"epoch-{epoch:04d}{suffix}"


def epoch_of(path: Path) -> int | None:
    """``epoch-0012.npz`` -> 12; None for any other name."""
    m = re.fullmatch(r"epoch-(\d+)\.\w+", path.name)
    return int(m[1]) if m else None


def _fault() -> tuple[str, str]:
    kind, _, arg = os.environ.get(FAULT_ENV, "").partition(":")
    return kind, arg


def _disk_full(for_events: bool = False) -> None:
    """Raise ENOSPC when an ``enospc-*`` fault says the disk is full by now (test hook)."""
    global _writes
    kind, arg = _fault()
    if kind not in ("enospc-after", "enospc-all-after"):
        return
    if for_events:
        if kind == "enospc-all-after" and _writes >= int(arg):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return
    _writes += 1
    if _writes >= int(arg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _before_replace(path: Path) -> None:
    """The window between a complete temporary file and its rename (test hook)."""
    kind, arg = _fault()
    if kind == "delay":
        time.sleep(float(arg))
    elif kind == "kill-before-replace" and fnmatch.fnmatch(path.as_posix(), "*/" + arg):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` never holds a partial file, even after kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        _disk_full()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _before_replace(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the folder's entry is on disk
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_partial_line(path: Path) -> int:
    """Cut a last line that has no newline (a write torn by a crash); returns bytes removed."""
    if not path.exists():
        return 0
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # scan backwards in blocks for the last newline
        pos = size
        keep = 0
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            block = f.read(pos - start)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


class RunLock:
    """An exclusive ``flock`` on RUN/run.lock; the kernel releases it when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: float = 2.0) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                # a reader may hold a shared lock for an instant: retry briefly
                if time.monotonic() >= deadline:
                    holder = read_pid(self.path)
                    os.close(fd)
                    who = f" (pid {holder})" if holder else ""
                    raise RunLockedError(
                        f"another trainer{who} is running in {self.path.parent}; "
                        f"stop it first (python -m trainer stop {self.path.parent.name} "
                        f"--runs-dir {self.path.parent.parent})"
                    ) from None
                time.sleep(0.1)
        # the pid inside is informative only; the flock is what counts
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_is_held(path: Path) -> bool:
    """True when some live process holds RUN/run.lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RunWriter:
    """Writes one run directory (rank 0 only)."""

    enabled = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = RunLock(self.root / LOCK)
        self._events_fd: int | None = None
        self._events_mutex = threading.Lock()  # the device sampler writes from its own thread
        self._created = False

    # --- ownership --------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take run.lock, then tidy what a killed predecessor may have left."""
        self._created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        for tmp in self.root.rglob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        truncate_partial_line(self.root / METRICS)

    def close(self) -> None:
        with self._events_mutex:
            if self._events_fd is not None:
                os.close(self._events_fd)
                self._events_fd = None
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
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_bytes(name, (json.dumps(obj, indent=2) + "\n").encode())

    def write_tsv(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
        return self.write_bytes(name, ("\n".join(lines) + "\n").encode())

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.write_bytes(name, buf.getvalue())

    def write_torch(self, name: str, obj: Any) -> Path:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        return self.write_bytes(name, buf.getvalue())

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / name).unlink()

    # --- events -----------------------------------------------------------------------------
    def event(self, kind: str, epoch: int, **fields: Any) -> dict[str, Any]:
        """Append one event to metrics.jsonl as a single complete line."""
        record = {"kind": kind, "time": round(time.time(), 3), "epoch": epoch, **fields}
        line = (json.dumps(record, allow_nan=False, default=_jsonable) + "\n").encode()
        with self._events_mutex:
            if self._events_fd is None:
                self._events_fd = os.open(
                    self.root / METRICS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
            _disk_full(for_events=True)
            # one write on an O_APPEND descriptor: a reader sees the whole line or none of it
            os.write(self._events_fd, line)
        return record

    # --- background pid -----------------------------------------------------------------------
    def remove_pid_if_mine(self) -> None:
        if read_pid(self.root / PID) == os.getpid():
            self.remove(PID)


class NullWriter:
    """What non-zero ranks get: the same calls, writing nothing."""

    enabled = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
