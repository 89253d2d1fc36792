"""The writer's side of a runs location: where a writer writes, and the copy it needs first.

Writing to a bucket means writing a local staging copy (EPOCHSCOPE_CACHE_DIR/staging/...) that
the writer uploads as it grows. Resuming a bucket run on a machine that lacks the copy (or has
an older one) pulls it first, checkpoints included, so ``--resume`` works from anywhere.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from epochscope.layout import METRICS, RUN_JSON
from epochscope.storage.location import is_remote, local_folder, staging_folder


def writing_place(runs_dir: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """(the local folder a writer writes run directories in, the bucket URL or None)."""
    if is_remote(runs_dir):
        url = os.fspath(runs_dir).rstrip("/")
        return staging_folder(url), url
    return local_folder(runs_dir), None


def bucket_has(bucket: str, name: str, storage_options: dict[str, Any] | None = None) -> bool:
    from epochscope.storage.bucket import HEAD
    from epochscope.storage.store import open_store

    return open_store(bucket, storage_options).stat(f"{name}/{HEAD}") is not None


def pull_for_writing(
    bucket: str, name: str, local_runs: Path, storage_options: dict[str, Any] | None = None
) -> bool:
    """Before a writer opens run ``name``: when the bucket holds more of it than the local
    copy (or the local copy is missing), fetch it, checkpoints included. True when pulled."""
    from epochscope.storage.bucket import HEAD, HEAD_CAP, Head
    from epochscope.storage.mirror import Mirror
    from epochscope.storage.state import STATE_DIR
    from epochscope.storage.store import open_store

    store = open_store(bucket, storage_options)
    try:  # one ranged read, no stat first: a missing head is a run the bucket does not hold
        body = store.get(f"{name}/{HEAD}", HEAD_CAP)
    except FileNotFoundError:
        return False
    head = Head.parse(body, store.shown)
    run_dir = local_runs / name
    try:
        local_log = (run_dir / METRICS).stat().st_size
    except FileNotFoundError:
        local_log = -1
    if (run_dir / RUN_JSON).is_file() and local_log >= head.metrics_end:
        return False
    local_runs.mkdir(parents=True, exist_ok=True)
    Mirror(store, root=local_runs).pull(name)
    # the copy is the writer's now: its liveness is its run.lock again, not the bucket's state
    for leftover in (f"{name}.json", f"{name}.lock"):
        with contextlib.suppress(FileNotFoundError):
            (local_runs / STATE_DIR / leftover).unlink()
    return True
