"""What both importers share: where the run goes, its default name, and writing it whole.

An import writes into a temporary folder beside the runs (``RUNS/.import-NAME-PID``, which the
dashboard does not list) and renames the finished run into place, so a failed import leaves
nothing behind; with ``--resume`` the existing run is copied there, added to, and swapped in.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from epochscope.layout import RUN_JSON, check_run_name
from epochscope.lock import RunLockedError, lock_is_held
from epochscope.storage.writing import pull_for_writing, writing_place

#: folder names too common to name a run alone: the default name takes their parents too
GENERIC = re.compile(
    r"^(version_\d+|lightning_logs|tb_logs|logs?|runs?|tensorboard|tb|default|output|outputs|"
    r"train|events?|summaries|\d+)$",
    re.I,
)


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default="runs", help="where the run directory goes (default runs)")
    p.add_argument("--name", help="run name (default: made from the folder's path, e.g. "
                   "proj-lightning_logs-version_0 for proj/lightning_logs/version_0)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="add to an existing run of that name (its epochs are kept)")  # fmt: skip


def run_name(folder: Path, name: str | None) -> str:
    """``--name``, or the folder's name with as many parents as it takes to not be generic
    (``version_0`` alone would collide with every other Lightning project's first run)."""
    if name:
        check_run_name(name)
        return name
    parts: list[str] = []
    for part in reversed(folder.resolve().parts[1:]):
        parts.insert(0, part)
        if not GENERIC.match(part) or len(parts) == 4:
            break
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-._")
    return (cleaned or "imported")[-64:].strip("-._") or "imported"


def fraction(value: float) -> float:
    """An accuracy as a fraction: timm and many loggers write percentages."""
    return value / 100.0 if value > 1.0 else value


@contextmanager
def staged(runs_dir: Path, name: str, resume: bool) -> Iterator[Path]:
    """A temporary runs directory to write run ``name`` into; on success the run is renamed
    to ``runs_dir/name``, on any error the temporary folder is removed and nothing changes."""
    runs = Path(runs_dir)
    target = runs / name
    exists = (target / RUN_JSON).is_file()
    if exists and not resume:
        raise FileExistsError(
            f"run {name!r} already exists in {runs}: add --resume to add to it, or --name NEW "
            "to import it as another run"
        )
    if not exists and target.exists():
        raise FileExistsError(f"{target} exists and is not a run: choose another --name")
    if exists and lock_is_held(target / "run.lock"):
        raise RunLockedError(f"run {name!r} is being written by another process")
    runs.mkdir(parents=True, exist_ok=True)
    tmp = runs / f".import-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if exists:
            shutil.copytree(target, tmp / name, ignore=shutil.ignore_patterns("run.lock"))
        yield tmp
        if exists:
            os.rename(target, tmp / ".replaced")
        os.rename(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_into(
    runs_dir: str | os.PathLike[str], name: str, resume: bool, write: Callable[[Path], Path]
) -> Path:
    """``write(tmp_runs_dir)`` writes run ``name`` there; returns the run's final directory.
    A bucket ``runs_dir`` (s3://...): the run is made in its local staging copy (the bucket's
    copy fetched first when resuming), then uploaded whole."""
    local_runs, bucket = writing_place(runs_dir)
    if bucket is not None:
        pull_for_writing(bucket, name, local_runs)
    with staged(local_runs, name, resume) as tmp:
        write(tmp)
    if bucket is not None:
        from epochscope.storage.sync import upload_once

        upload_once(local_runs / name, bucket)
    return local_runs / name
