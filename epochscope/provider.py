"""``Runs(root)``: the one provider of a runs folder, shaped like TensorBoard's DataProvider.

Views ask it, never the files: the picker's run summaries and search words, a run by name (a
:class:`~epochscope.run.Run`, from a byte-bounded LRU), the live poll's events after a byte
position, the epochs a run has, a model's bytes for the classifier, and where derived caches
(the embedding map's layouts) go. Every cache it keeps is bounded and keyed by the run's
name inside this one root; a run's files changing (inode, size, mtime) makes a new snapshot.
``Runs("s3://bucket/runs")`` (or az://, gs://) reads a bucket the same way: a local mirror
(:mod:`epochscope.storage.mirror`) is brought up to date before each answer, within its
request budget, and the answer comes from the mirror, so a bucket run shows as a local one.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from epochscope import maps, reader
from epochscope.layout import (
    EMBEDDING_SUFFIX,
    EMBEDDINGS,
    MODEL_SUFFIX,
    MODELS,
    PREDICTION_SUFFIX,
    PREDICTIONS,
    RUN_NAME_RE,
    epochs_in,
    safe_run_dir,
)
from epochscope.modelfile import ModelFile
from epochscope.records import RunInfo
from epochscope.run import Run, RunCache
from epochscope.settings import search_text, settings
from epochscope.storage.location import is_remote, local_folder

if TYPE_CHECKING:
    from epochscope.storage.mirror import Mirror

Having = Literal["predictions", "models", "embeddings"]
_FOLDERS: dict[str, tuple[str, str]] = {
    "predictions": (PREDICTIONS, PREDICTION_SUFFIX),
    "models": (MODELS, MODEL_SUFFIX),
    "embeddings": (EMBEDDINGS, EMBEDDING_SUFFIX),
}


class Runs:
    """The runs of one folder (see the module's docstring).

    Errors are the provider's: ValueError for a name that is not a run name (or escapes the
    folder), LookupError for a run that is not there.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        max_runs: int = 256,
        metrics_runs: int | None = None,
        listed: int = 10_000,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url: str | None = None
        self._mirror: Mirror | None = None
        if is_remote(root):
            from epochscope.storage.mirror import Mirror
            from epochscope.storage.store import open_store

            self._mirror = Mirror(open_store(os.fspath(root), storage_options))
            self.url = self._mirror.store.shown
            self.root = self._mirror.root
        else:
            self.root = local_folder(root)
        self._logs = reader.MetricsCache(metrics_runs)
        self._runs = RunCache(max_bytes, max_runs, logs=self._logs)
        self._summaries = reader.SummaryCache(listed)
        self._candidates = reader._Candidates()
        self._searches: OrderedDict[str, tuple[RunInfo | None, str]] = OrderedDict()
        self._max_listed = listed
        # (the candidates' list, by name): one attribute, replaced whole (threads read it)
        self._index: tuple[list[Path] | None, dict[str, Path]] = (None, {})
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<epochscope Runs {self.url or str(self.root)!r}>"

    def probe(self) -> None:
        """StorageError when a bucket cannot be listed (missing, no credentials, down); a
        local folder needs nothing."""
        if self._mirror is not None:
            self._mirror.probe()

    def _fresh(self, name: str) -> None:
        """A bucket run: its mirror brought up to date (at most one HEAD a poll interval)."""
        if self._mirror is not None and isinstance(name, str) and RUN_NAME_RE.fullmatch(name):
            self._mirror.refresh_run(name)

    # --- the picker ------------------------------------------------------------------------
    def summaries(self) -> list[reader.RunSummary]:
        """Every run (a valid name and a run.json), newest first; a damaged run hides itself."""
        if self._mirror is not None:
            self._mirror.refresh_listing()
        return reader.list_runs(self.root, self._summaries, self._candidates)

    def names(self, having: Having | None = None) -> list[str]:
        """Run names, newest first; with ``having``, only runs with at least one epoch of it."""
        names = [s.name for s in self.summaries()]
        if having is None:
            return names
        return [n for n in names if self.epochs(n, having)]

    def info(self, name: str) -> RunInfo | None:
        """The run.json of a listed run (read only when it changed), None when unreadable."""
        try:
            path = safe_run_dir(self.root, name)
        except (ValueError, LookupError):
            return None
        info = self._summaries.info(path)
        if info is None:
            try:
                info = self.run(name).info_or_none
            except (LookupError, ValueError, OSError):
                return None
        return info

    def search_words(self, name: str) -> str:
        """The picker's search words of a run (``lr=0.1 arch=...``), made again only when its
        run.json changed: from the RunInfo the summary cache holds, so a poll over 1,000 runs
        reads and stats nothing more."""
        path = self._listed(name)
        if path is None:
            return ""
        info = self._summaries.info(path)
        with self._lock:
            hit = self._searches.get(name)
            if hit is not None and hit[0] is info:
                self._searches.move_to_end(name)
                return hit[1]
        text = search_text(settings(info))
        with self._lock:
            self._searches[name] = (info, text)
            while len(self._searches) > self._max_listed:
                self._searches.popitem(last=False)
        return text

    def _listed(self, name: str) -> Path | None:
        """The folder of a run the last listing found (no checks again: the listing made
        them, and lists again only when RUNS changed), else None."""
        listing = self._candidates.get(self.root)  # one stat of RUNS while it is unchanged
        index = self._index
        if listing is not index[0]:
            index = self._index = (listing, {p.name: p for p in listing})
        return index[1].get(name)

    # --- one run -----------------------------------------------------------------------------
    def check(self, name: str) -> str:
        """``name`` when it names a run folder here; ValueError (not a run name, or a link
        out of the folder) or LookupError (not there) otherwise. Reads nothing of the run."""
        safe_run_dir(self.root, name)
        return name

    def run(self, name: str) -> Run:
        """The Run of ``name`` (a new snapshot when its files changed)."""
        self._fresh(name)
        return self._runs.get(safe_run_dir(self.root, name))

    def epochs(self, name: str, having: Having = "predictions") -> list[int]:
        """Epochs of a run with predictions, models or embeddings, ascending ([] when none or
        when the name is not a run), without opening a Run."""
        self._fresh(name)
        try:
            folder, suffix = _FOLDERS[having]
            return epochs_in(safe_run_dir(self.root, name) / folder, suffix)
        except (ValueError, LookupError, OSError):
            return []

    def model(self, name: str, epoch: int) -> ModelFile:
        """An epoch's model for the classifier; OSError when it has none."""
        self._fresh(name)
        return ModelFile.of(safe_run_dir(self.root, name), epoch)

    # --- the live poll -----------------------------------------------------------------------
    def log(self, name: str) -> reader.MetricsLog:
        """metrics.jsonl of a run, brought up to date (read incrementally, bounded cache)."""
        self._fresh(name)
        return self._logs.get(safe_run_dir(self.root, name))

    def events_since(self, name: str, cursor: int) -> tuple[list[dict[str, Any]], bool, int]:
        """(events after byte ``cursor``, whether the cursor is still valid, the new cursor)."""
        return self.log(name).since(cursor)

    def state(self, name: str, events: list[dict[str, Any]]) -> str:
        """running, finished, failed, stopped or crashed, from ``events`` and run.lock."""
        return reader.run_state(safe_run_dir(self.root, name), events)

    # --- derived caches ------------------------------------------------------------------------
    def cache_dir(self) -> Path:
        """Where derived caches (the embedding map's layouts) of these runs go."""
        return maps.cache_root(self.root / "_")

    # --- sizes ---------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes the cached Runs hold."""
        return self._runs.nbytes

    def clear(self) -> None:
        """Forget every cached Run (the next ask opens them again)."""
        self._runs.clear()
