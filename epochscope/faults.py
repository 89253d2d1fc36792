"""Fault injection for the crash and disk-fault tests (docs/reliability.md).

Inert unless the environment variable ``EPOCHSCOPE_FAULT`` is set to one of:

- ``kill-before-replace:GLOB``: SIGKILL this process once the temporary file of a path matching
  ``*/GLOB`` (for example ``models/epoch-0002.onnx``) is written, just before ``os.replace``;
- ``delay:SECONDS``: sleep between writing a temporary file and renaming it (a wider window
  for random kills to land in);
- ``enospc-after:N``: the Nth atomic write of this process and every later one raise
  ``OSError(ENOSPC)``, as on a full disk; ``enospc-all-after:N`` fails event appends too.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import time
from pathlib import Path

FAULT_ENV = "EPOCHSCOPE_FAULT"
_writes = 0  # atomic writes attempted by this process, for enospc-after:N


def _fault() -> tuple[str, str]:
    kind, _, arg = os.environ.get(FAULT_ENV, "").partition(":")
    return kind, arg


def check_disk(for_events: bool = False) -> None:
    """Raise ENOSPC when an ``enospc-*`` fault says the disk is full by now."""
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


def before_replace(path: Path) -> None:
    """The window between a complete temporary file and its rename."""
    kind, arg = _fault()
    if kind == "delay":
        time.sleep(float(arg))
    elif kind == "kill-before-replace" and fnmatch.fnmatch(path.as_posix(), "*/" + arg):
        os.kill(os.getpid(), signal.SIGKILL)
