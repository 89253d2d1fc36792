"""The runs this worker serves, each read through one :class:`epochscope.Run`.

One cache rule for every page: a per-worker :class:`epochscope.RunCache`, least recently used
dropped first, bounded by the bytes its Runs hold (EPOCHSCOPE_RUN_CACHE_MB), and a new Run
when a run's files change (inode, size, mtime). What a view derives from a Run is kept in that
Run's memo, under the same bound.
"""

from __future__ import annotations

import os
from pathlib import Path

from dash.exceptions import PreventUpdate

from dashboard import config
from epochscope.layout import safe_run_dir
from epochscope.records import RunInfo
from epochscope.run import Run, RunCache

RUNS = RunCache()


def run(run_dir: str | os.PathLike[str]) -> Run:
    """The Run of a run directory (one the caller checked is inside RUNS_DIR); LookupError
    when it has no run.json."""
    return RUNS.get(Path(run_dir))


def named(name: str | None) -> Run:
    """The Run a page's run picker names, checked inside RUNS_DIR (once per callback: every
    read goes through it); no update at all when nothing or nothing valid is named."""
    if not name:
        raise PreventUpdate
    try:
        return run(safe_run_dir(config.runs_dir(), name))
    except (ValueError, LookupError):
        raise PreventUpdate from None


def info(run_dir: str | os.PathLike[str]) -> RunInfo | None:
    """run.json of a run, None when it is missing or unreadable."""
    try:
        return run(run_dir).info_or_none
    except (LookupError, ValueError, OSError):
        return None
