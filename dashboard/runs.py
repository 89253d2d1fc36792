"""The runs this worker serves: one :class:`epochscope.Runs` provider for RUNS_DIR.

Every page, the API, the live poll and the classifier read through it and the
:class:`epochscope.Run` it hands out: one cache rule (a byte-bounded LRU of Runs,
EPOCHSCOPE_RUN_CACHE_MB, a new Run when a run's files change), and no path in dashboard/.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from dash.exceptions import PreventUpdate

from dashboard import config
from epochscope import Run, Runs
from epochscope.records import RunInfo

#: providers kept (one in a served dashboard: RUNS_DIR; tests and the bench open more folders)
ROOTS = 4
_lock = threading.Lock()
_providers: OrderedDict[str, Runs] = OrderedDict()


def provider(root: str | os.PathLike[str] | None = None) -> Runs:
    """The provider of ``root`` (default RUNS_DIR), kept for the last few roots asked for."""
    key = os.fspath(config.runs_dir() if root is None else root)
    with _lock:
        runs = _providers.get(key)
        if runs is None:
            runs = _providers[key] = Runs(key)
        _providers.move_to_end(key)
        while len(_providers) > ROOTS:
            _providers.popitem(last=False)
        return runs


def run(name: str) -> Run:
    """The Run of a run name in RUNS_DIR: ValueError for a bad name, LookupError when absent."""
    return provider().run(name)


def at(run_dir: str | os.PathLike[str]) -> Run:
    """The Run of a run directory, through the provider of its folder (tests and the bench
    name runs by directory; pages name them by name)."""
    path = Path(run_dir)
    return provider(path.parent).run(path.name)


def named(name: str | None) -> Run:
    """The Run a page's run picker names (once per callback: every read goes through it); no
    update at all when nothing or nothing valid is named."""
    if not name:
        raise PreventUpdate
    try:
        return run(name)
    except (ValueError, LookupError):
        raise PreventUpdate from None


def info(name: str) -> RunInfo | None:
    """run.json of a run, None when it is missing or unreadable."""
    return provider().info(name)


def clear() -> None:
    """Forget every provider's cached Runs."""
    with _lock:
        for runs in _providers.values():
            runs.clear()
