"""A local mirror of a bucket's runs, kept up to date with few requests, read by the ordinary
bounded reader (so a bucket run and a local run show the same).

- The run list: one listing of the prefix at most every EPOCHSCOPE_LIST_SECONDS (30 s), plus
  one HEAD of head.json per run the mirror has not seen closed.
- A watched run: at most one HEAD of its head.json per EPOCHSCOPE_POLL_SECONDS (2 s), the
  interval doubling while nothing changes up to EPOCHSCOPE_POLL_MAX_SECONDS (40 s); only when
  its ETag changed is the head fetched, and then only the objects that changed.
- Every object is checked against the reader's size limit before it is downloaded (size from
  the head); names a head gives are checked to be run files, so nothing is written outside the
  run's folder. Checkpoints are not mirrored (only a resuming trainer pulls them).
- The mirror is a cache: EPOCHSCOPE_CACHE_MB (default 4096) bounds it, least recently used runs
  out first (fetched again when next looked at).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from epochscope.layout import METRICS, RUN_NAME_RE, cap_of
from epochscope.storage.bucket import HEAD, HEAD_CAP, Head, is_checkpoint, md5, segment_name
from epochscope.storage.location import StorageError, mirror_folder
from epochscope.storage.state import STATE_DIR, write_state
from epochscope.storage.store import Store
from epochscope.writer import atomic_write

log = logging.getLogger("epochscope.storage")
CHECKPOINT_CAP = 16 << 30


def _seconds(env: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(env, default)))
    except ValueError:
        return default


class Mirror:
    """The runs under one bucket prefix, mirrored into ``root`` (default: under
    EPOCHSCOPE_CACHE_DIR, one folder per prefix)."""

    def __init__(self, store: Store, root: str | os.PathLike[str] | None = None) -> None:
        self.store = store
        self.root = Path(root) if root is not None else mirror_folder(store.url)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / STATE_DIR).mkdir(exist_ok=True)
        self.list_seconds = _seconds("EPOCHSCOPE_LIST_SECONDS", 30.0)
        self.poll_seconds = _seconds("EPOCHSCOPE_POLL_SECONDS", 2.0)
        self.poll_max_seconds = _seconds("EPOCHSCOPE_POLL_MAX_SECONDS", 40.0)
        self._interval: dict[str, float] = {}  # per run: doubles while its head stays the same
        self.max_bytes = int(_seconds("EPOCHSCOPE_CACHE_MB", 4096) * (1 << 20))
        self._listed_at = -1e18
        self._polled: dict[str, float] = {}
        self._etags: dict[str, str] = {}
        self._closed: set[str] = set()
        self._used: dict[str, float] = {}
        self._sizes: dict[str, int] = {}  # bytes mirrored per run (from its state)
        self._locks: dict[str, threading.Lock] = {}  # one per run: refreshes of others go on
        self._locks_guard = threading.Lock()

    def probe(self) -> None:
        """StorageError naming the store when one listing of it fails."""
        try:
            self.store.check_bucket()
            self.store.names()
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot list {self.store.shown}: {type(e).__name__}: {e}") from None

    # --- the run list -----------------------------------------------------------------------
    def refresh_listing(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._listed_at < self.list_seconds:
            return
        self._listed_at = now
        names = [n for n in self.store.names() if RUN_NAME_RE.fullmatch(n)]
        for name in names:
            self._adopt(name)
        stale = [n for n in names if n not in self._closed]
        # many runs at once (the first listing of a bucket): their requests overlap
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(stale)))) as pool:
            list(pool.map(lambda n: self.refresh_run(n, force=True, evict=False), stale))
        if stale:
            self._evict(keep="")
        listed = set(names)
        for local in self.root.iterdir():
            if RUN_NAME_RE.fullmatch(local.name) and local.name not in listed:
                self._drop(local.name)  # gone from the bucket

    # --- one run ----------------------------------------------------------------------------
    def refresh_run(
        self, name: str, *, force: bool = False, checkpoints: bool = False, evict: bool = True
    ) -> bool:
        """Bring run ``name`` up to date (at most one HEAD per poll interval); True when
        something changed. A store that is down keeps what the mirror has, said in the log."""
        now = time.monotonic()
        self._used[name] = time.time()
        interval = self._interval.get(name, self.poll_seconds)
        if not force and now - self._polled.get(name, -1e18) < interval:
            return False
        self._polled[name] = now
        try:
            found = self.store.stat(f"{name}/{HEAD}")
        except (OSError, ValueError) as e:
            log.warning("cannot reach %s/%s (%s); showing the copy fetched before",
                        self.store.shown, name, type(e).__name__)  # fmt: skip
            return False
        if found is None:
            return False
        # idle: ask less often (2, 4, 8 ... 40 s), back to every 2 s once the run changes
        self._interval[name] = min(self.poll_max_seconds, max(interval, 0.5) * 2)
        if self.poll_seconds == 0:
            self._interval[name] = 0.0
        self._adopt(name)
        if found["etag"] == self._etags.get(name) and not checkpoints:
            return False
        with self._locked(name):
            try:
                changed = self._fetch(name, found, checkpoints)
            except (OSError, ValueError) as e:
                log.warning("cannot mirror %s/%s: %s", self.store.shown, name, e)
                return False
        self._etags[name] = found["etag"]
        if evict and changed:
            self._evict(keep=name)
        if changed:  # a heartbeat alone changes the head, not the run: keep backing off
            self._interval[name] = self.poll_seconds
        return changed

    def _fetch(self, name: str, found: dict[str, Any], checkpoints: bool) -> bool:
        where = f"{self.store.shown}/{name}/{HEAD}"
        head = Head.parse(self.store.get(f"{name}/{HEAD}", HEAD_CAP, found["size"]), where)
        run_dir = self.root / name
        run_dir.mkdir(exist_ok=True)
        state = self._state(name)
        have: dict[str, list] = state.get("files", {})
        changed = False
        wanted = []
        for rel, (size, digest) in sorted(head.files.items()):
            if is_checkpoint(rel) and not checkpoints:
                continue
            if have.get(rel) == [size, digest] and (run_dir / rel).is_file():
                continue
            cap = CHECKPOINT_CAP if is_checkpoint(rel) else cap_of(rel)
            if size > cap:  # refused unread, as the local reader refuses it
                log.warning("not mirrored: %s/%s/%s: %d bytes, over its %d-byte limit",
                            self.store.shown, name, rel, size, cap)  # fmt: skip
                continue
            wanted.append((rel, size, digest))
        got = self.store.get_many([(f"{name}/{rel}", size) for rel, size, _ in wanted])
        for (rel, size, digest), data in zip(wanted, got, strict=True):
            if isinstance(data, BaseException):
                if not isinstance(data, FileNotFoundError):  # pruned since: the next head says
                    log.warning("cannot fetch %s/%s/%s: %s", self.store.shown, name, rel,
                                type(data).__name__)  # fmt: skip
                continue
            if len(data) != size or md5(data) != digest:
                continue  # rewritten since the head was written: the next poll gets it
            atomic_write(run_dir / rel, data)
            have[rel] = [size, digest]
            changed = True
        for rel in [r for r in have if r not in head.files]:
            with contextlib.suppress(FileNotFoundError):
                (run_dir / rel).unlink()
            del have[rel]
            changed = True
        changed |= self._fetch_log(name, run_dir, head, state)
        state.update(files=have, heartbeat=head.heartbeat, closed=head.closed,
                     version=head.version, etag=found["etag"])  # fmt: skip
        write_state(self.root, name, state)
        self._sizes[name] = _mirrored_bytes(state)
        if head.closed:
            self._closed.add(name)
        else:
            self._closed.discard(name)
        return changed

    def _fetch_log(self, name: str, run_dir: Path, head: Head, state: dict) -> bool:
        path = run_dir / METRICS
        have = int(state.get("metrics_end", 0))
        if "metrics_end" not in state or have > head.metrics_end or not path.exists():
            have = 0  # nothing mirrored yet, or not this log: start it again
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        pieces = []
        for begin, end in head.metrics:
            if end <= have:
                continue
            if begin > have:
                raise ValueError(f"{self.store.shown}/{name}: a metrics segment is missing")
            data = self.store.get(f"{name}/{segment_name(begin, end)}", end - begin + 1)
            if len(data) != end - begin:
                raise ValueError(f"{self.store.shown}/{name}: a metrics segment is torn")
            pieces.append(data[have - begin :])
            have = end
        if not pieces:
            state["metrics_end"] = have
            return False
        with open(path, "ab") as f:  # whole lines, appended: a reader never sees half a line
            f.write(b"".join(pieces))
            f.flush()
        state["metrics_end"] = have
        return bool(pieces)

    def pull(self, name: str) -> bool:
        """Everything of run ``name``, checkpoints included (a trainer resuming it here)."""
        return self.refresh_run(name, force=True, checkpoints=True)

    # --- bookkeeping ------------------------------------------------------------------------
    def _adopt(self, name: str) -> None:
        """A run this process has not refreshed yet starts from what the mirror holds of it
        (another worker, or an earlier process, may have mirrored it): its ETag, whether it
        closed, its size. Nothing is asked of the store."""
        if name in self._etags:
            return
        known = self._state(name) if (self.root / name).is_dir() else {}
        self._etags[name] = known.get("etag", "")
        if known.get("closed"):
            self._closed.add(name)
        self._sizes[name] = _mirrored_bytes(known)

    def _state(self, name: str) -> dict[str, Any]:
        try:
            body = json.loads((self.root / STATE_DIR / f"{name}.json").read_text())
        except (OSError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """One process at a time refreshes a run (gunicorn's workers share the mirror)."""
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock, open(self.root / STATE_DIR / f"{name}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _drop(self, name: str) -> None:
        with self._locked(name):
            shutil.rmtree(self.root / name, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.root / STATE_DIR / f"{name}.json").unlink()
        self._etags.pop(name, None)
        self._closed.discard(name)
        self._sizes.pop(name, None)

    def _evict(self, keep: str) -> None:
        """Least recently used runs out until the mirror fits EPOCHSCOPE_CACHE_MB. Sizes come
        from the mirror's own records of what it fetched, not from walking its files."""
        runs = [p.name for p in self.root.iterdir() if RUN_NAME_RE.fullmatch(p.name)]
        for name in runs:
            self._adopt(name)
        total = sum(self._sizes.get(n, 0) for n in runs)
        for name in sorted((n for n in runs if n != keep), key=lambda n: self._used.get(n, 0)):
            if total <= self.max_bytes:
                return
            total -= self._sizes.get(name, 0)
            self._drop(name)


def _mirrored_bytes(state: dict[str, Any]) -> int:
    """Bytes a run's mirror holds, from its state: the files fetched and the log's length."""
    files = state.get("files") or {}
    sizes = [entry[0] for entry in files.values() if isinstance(entry, list) and entry]
    return sum(s for s in sizes if isinstance(s, int)) + int(state.get("metrics_end") or 0)
