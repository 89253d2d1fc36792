"""Sending a run directory up to a bucket: one pass at a time, idempotent and resumable.

A pass compares the local run with the bucket's head (sizes and MD5s) and uploads only what
differs: new epoch files, the new complete lines of metrics.jsonl as one segment, a changed
run.json. Then it writes the head. A pass killed half way leaves objects the head does not
name yet; the next pass uploads them again and writes the head. The training thread never
waits: :class:`BackgroundUpload` runs passes on its own thread, woken by the writer, and a
store that is slow or down only delays them (retried with a growing pause, said in the log);
the local copy keeps everything meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from epochscope.layout import METRICS
from epochscope.lock import process_alive
from epochscope.storage.bucket import (
    BEAT_SECONDS,
    HEAD,
    HEAD_CAP,
    LEASE,
    LEASE_CAP,
    STALE_SECONDS,
    Head,
    md5,
    md5_file,
    segment_name,
    stored,
)
from epochscope.storage.store import Store

log = logging.getLogger("epochscope.storage")
BIG = 8 << 20  # files over this go up from disk in parts, not from memory


class RunLeaseError(RuntimeError):
    """Another writer holds the run in the bucket (or took it over from this one)."""


class Upload:
    """Run directory ``run_dir`` uploaded as run ``name`` of ``store``."""

    def __init__(self, run_dir: str | os.PathLike[str], store: Store, name: str) -> None:
        self.run_dir = Path(run_dir)
        self.store = store
        self.name = name
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.head: Head | None = None
        self.bytes_up = 0  # bytes of the run's own files and segments sent
        self._seen: dict[str, tuple[int, int, str]] = {}  # rel -> size, mtime_ns, md5
        self._beat = 0.0
        self._leased = False
        self._orphans: list[str] = []  # objects of a replaced run, removed after the new head

    @property
    def where(self) -> str:
        return f"{self.store.shown}/{self.name}"

    def _rel(self, rel: str) -> str:
        return f"{self.name}/{rel}"

    # --- the lease --------------------------------------------------------------------------
    def _lease_body(self) -> bytes:
        return json.dumps({"writer": self.writer, "host": socket.gethostname(),
                           "pid": os.getpid(), "heartbeat": time.time()}).encode()  # fmt: skip

    def _read_lease(self) -> dict | None:
        try:
            body = json.loads(self.store.get(self._rel(LEASE), LEASE_CAP))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return {}  # unreadable: treated as stale
        return body if isinstance(body, dict) else {}

    def acquire(self) -> None:
        """Become the run's one writer in the bucket, or RunLeaseError naming the holder."""
        if self.store.create(self._rel(LEASE), self._lease_body()):
            self._leased, self._beat = True, time.time()
            return
        held = self._read_lease() or {}
        age = time.time() - float(held.get("heartbeat") or 0)
        here = held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int)
        dead_here = here and not process_alive(held["pid"])
        if age < STALE_SECONDS and not dead_here:
            raise RunLeaseError(
                f"run {self.name!r} in {self.store.shown} is being written by "
                f"{held.get('host', '?')} (pid {held.get('pid', '?')}, heartbeat {age:.0f} s "
                f"ago); a writer that died loses it after {STALE_SECONDS:.0f} s"
            )
        # a dead writer's lease: take it over (and check below, on every beat, that we hold it)
        self.store.remove(self._rel(LEASE))
        if not self.store.create(self._rel(LEASE), self._lease_body()):
            raise RunLeaseError(f"run {self.name!r} in {self.store.shown}: another writer "
                                "took over its stale lease first")  # fmt: skip
        log.warning("took over the stale lease of %s (%.0f s old)", self.where, age)
        self._leased, self._beat = True, time.time()

    def _refresh_lease(self) -> None:
        held = self._read_lease()
        if held is not None and held.get("writer") != self.writer:
            self._leased = False
            raise RunLeaseError(f"{self.where}: another writer took the run over; "
                                "this one stops uploading")  # fmt: skip
        self.store.put(self._rel(LEASE), self._lease_body())

    def release(self) -> None:
        if self._leased:
            held = self._read_lease()
            if held is None or held.get("writer") == self.writer:
                self.store.remove(self._rel(LEASE))
            self._leased = False

    # --- one pass ---------------------------------------------------------------------------
    def remote_head(self) -> Head | None:
        try:
            data = self.store.get(self._rel(HEAD), HEAD_CAP)
        except FileNotFoundError:
            return None
        return Head.parse(data, f"{self.where}/{HEAD}")

    def start_over(self) -> None:
        """The run is being replaced: the next head names only what is written from now on,
        and the old run's objects go once it is up."""
        old = self.remote_head()
        self.head = Head(writer=self.writer, version=old.version if old else 0)
        if old is not None:
            self._orphans = [*old.files, *(segment_name(b, e) for b, e in old.metrics)]

    def _local_files(self) -> dict[str, Path]:
        out = {}
        for path in self.run_dir.rglob("*"):
            rel = path.relative_to(self.run_dir).as_posix()
            if stored(rel) and path.is_file() and not path.is_symlink():
                out[rel] = path
        return out

    def sync(self, *, final: bool = False) -> int:
        """One pass (see the module docstring); returns the objects it put. ``final`` marks the
        head closed and folds the log's segments into one."""
        if self.head is None:
            self.head = self.remote_head() or Head(writer=self.writer)
        head = self.head
        put = 0
        local = self._local_files()
        for rel, path in sorted(local.items()):
            stat = path.stat()
            seen = self._seen.get(rel)
            if seen and seen[:2] == (stat.st_size, stat.st_mtime_ns):
                digest = seen[2]
                if head.files.get(rel) == (stat.st_size, digest):
                    continue
            if stat.st_size > BIG:
                digest = md5_file(path)
                if head.files.get(rel) != (stat.st_size, digest):
                    self.store.put_file(self._rel(rel), str(path))
                    put += 1
                    self.bytes_up += stat.st_size
                size = stat.st_size
            else:
                data = path.read_bytes()
                digest, size = md5(data), len(data)
                if head.files.get(rel) != (size, digest):
                    self.store.put(self._rel(rel), data)
                    put += 1
                    self.bytes_up += size
            self._seen[rel] = (stat.st_size, stat.st_mtime_ns, digest)
            head.files[rel] = (size, digest)
        gone = [rel for rel in head.files if rel not in local]
        for rel in gone:
            del head.files[rel]
        put += self._sync_log(head)
        now = time.time()
        beat = now - self._beat >= BEAT_SECONDS
        if put or gone or final or beat or head.version == 0:
            if self._leased and beat:
                self._refresh_lease()
                self._beat = now
            head.version += 1
            head.writer, head.heartbeat, head.closed = self.writer, now, final
            self.store.put(self._rel(HEAD), head.to_bytes())
            put += 1
        for rel in gone:  # after the head that no longer names them
            self.store.remove(self._rel(rel))
        while self._orphans and head.version:
            self.store.remove(self._rel(self._orphans.pop()))
        if final and len(head.metrics) > 1:
            put += self._fold_log(head)
        return put

    def _sync_log(self, head: Head) -> int:
        path = self.run_dir / METRICS
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        start = head.metrics_end
        if size < start:
            raise ValueError(
                f"{self.run_dir / METRICS} is shorter ({size} bytes) than the {start} bytes "
                f"{self.where} holds: a different run of that name; choose another name"
            )
        if size == start:
            return 0
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(size - start)
        data = data[: data.rfind(b"\n") + 1]  # whole lines only: the rest is still being written
        if not data:
            return 0
        end = start + len(data)
        self.store.put(self._rel(segment_name(start, end)), data)
        head.metrics.append((start, end))
        self.bytes_up += len(data)
        return 1

    def _fold_log(self, head: Head) -> int:
        """One segment for the whole log of a closed run (a later reader fetches it once)."""
        end = head.metrics_end
        with open(self.run_dir / METRICS, "rb") as f:
            data = f.read(end)
        old = list(head.metrics)
        self.store.put(self._rel(segment_name(0, end)), data)
        head.metrics = [(0, end)]
        head.version += 1
        self.store.put(self._rel(HEAD), head.to_bytes())
        for begin, stop in old:
            if (begin, stop) != (0, end):
                self.store.remove(self._rel(segment_name(begin, stop)))
        return 2


class BackgroundUpload:
    """Passes of an :class:`Upload` on a thread of their own: ``poke()`` after a write (never
    blocks: pokes while a pass runs fold into one), one every ``every`` seconds anyway (step
    lines, the heartbeat; a pass with nothing new sends nothing), ``finish()`` at the end."""

    def __init__(self, upload: Upload, *, every: float = 10.0, gap: float = 1.0) -> None:
        self.upload = upload
        self.every, self.gap = every, gap
        self.failures = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="epochscope-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stop.is_set():
                break
            if not self._pass():
                pause = min(60.0, 2.0**self.failures)
                self._stop.wait(pause)
            else:
                self._stop.wait(self.gap)  # fold the writes of the next second into one pass

    def _pass(self, final: bool = False) -> bool:
        try:
            self.upload.sync(final=final)
        except RunLeaseError as e:
            log.error("%s", e)
            self.last_error = str(e)
            self._stop.set()
            return False
        except Exception as e:  # a store slow or down: retried, the local copy keeps it all
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("upload to %s failed (%s); retry %d, the run is safe in %s",
                        self.upload.where, self.last_error, self.failures,
                        self.upload.run_dir)  # fmt: skip
            return False
        if self.failures:
            log.warning("upload to %s caught up after %d failed tries", self.upload.where,
                        self.failures)  # fmt: skip
        self.failures = 0
        return True

    def finish(self, timeout: float = 120.0) -> bool:
        """Stop the thread, then upload the rest and close the head (retried until
        ``timeout``); False, with the command that finishes the upload in the log, if not."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        deadline = time.monotonic() + timeout
        done = self._pass(final=True)
        while not done and time.monotonic() < deadline and self.upload._leased:
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
            done = self._pass(final=True)
        if done:
            self.upload.release()
        else:
            log.error("%s is not fully uploaded (%s); finish it with: python -m epochscope "
                      "sync %s %s", self.upload.where, self.last_error, self.upload.run_dir,
                      self.upload.store.shown)  # fmt: skip
        return done
