"""run.lock: an exclusive ``flock`` held by the live writer; the kernel drops it when that dies.

Everyone probes it the same way (:func:`lock_is_held`): a non-blocking *shared* lock on a fresh
descriptor, so any number of readers can probe at once and only a writer's exclusive lock
conflicts. A writer retries its exclusive lock briefly, since a probe holds the shared one for an
instant.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from epochscope.layout import read_regular


class RunLockedError(RuntimeError):
    """Another live process holds the run's lock."""


def read_pid(path: str | os.PathLike[str]) -> int | None:
    try:
        text = read_regular(path, 64).decode("ascii", "replace").strip()  # never a FIFO
    except (OSError, LookupError, ValueError):
        return None
    return int(text) if text.isdigit() and len(text) < 12 else None


def lock_is_held(path: str | os.PathLike[str]) -> bool:
    """True when some live process holds the exclusive lock on ``path`` (RUN/run.lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # closing drops our shared lock
    return False


class RunLock:
    """The writer's side: ``acquire`` takes the exclusive lock or raises RunLockedError."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

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
                if time.monotonic() >= deadline:
                    holder = read_pid(self.path)
                    os.close(fd)
                    who = f" (pid {holder})" if holder else ""
                    run = self.path.parent
                    raise RunLockedError(
                        f"another writer{who} is running in {run}; stop it first "
                        f"(python -m trainer stop {run.name} --runs-dir {run.parent})"
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


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie child of ours counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
