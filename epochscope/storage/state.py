"""What the mirror knows of each bucket run, kept beside the mirrored runs in ``.bucket/``
(not a run name, so no listing shows it). The reader asks it whether a mirrored run's writer
is alive, since a bucket run has no run.lock to probe."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATE_DIR = ".bucket"
#: a writer whose heartbeat is older than this is dead (it beats every 120 s)
STALE_SECONDS = 300.0


def write_state(root: Path, name: str, state: dict[str, Any]) -> None:
    from epochscope.writer import atomic_write

    atomic_write(root / STATE_DIR / f"{name}.json", json.dumps(state).encode())


def bucket_writer_alive(run_dir: str | os.PathLike[str]) -> bool | None:
    """For a mirrored run: whether its writer's heartbeat is fresh and it has not closed;
    None for a run that is not a mirror (probe its run.lock instead)."""
    path = Path(run_dir)
    state_file = path.parent / STATE_DIR / f"{path.name}.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("closed") is True:
        return False
    beat = state.get("heartbeat")
    return isinstance(beat, int | float) and time.time() - beat < STALE_SECONDS
