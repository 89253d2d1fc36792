"""Layouts computed off the request thread: one background thread per (run, epoch) a worker
was asked for, at most :data:`SLOTS` computing at once in a worker.

The thread calls ``Run.map_layout``, which takes the layout's lock (epochscope.maps): when
another worker already computes the same layout, this thread waits for it and then reads its
file, so across gunicorn workers each layout is computed once. A request meanwhile sees the
job's state ("computing" since when, or the error) and the page polls.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from epochscope.run import Run

log = logging.getLogger(__name__)

#: layouts one worker computes at once (each keeps a core busy for a minute or more)
SLOTS = 1
#: a failed layout is tried again after this many seconds
RETRY_S = 60.0


@dataclass
class Job:
    started: float
    done: bool = False
    error: str | None = None
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started


class LayoutJobs:
    """The worker's layout threads, by (run name, epoch, layout key)."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._jobs: dict[tuple[str, int, str | None], Job] = {}
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(slots)

    def request(self, run: Run, epoch: int) -> Job:
        """The job making ``run``'s layout of ``epoch``, started when there is none (or the
        last one failed more than RETRY_S ago)."""
        key = (run.name, epoch, run.map_key(epoch))
        with self._lock:
            job = self._jobs.get(key)
            stale = job is not None and job.error is not None and job.seconds > RETRY_S
            if job is None or stale or (job.done and job.error is None):
                # done without error yet asked again: the Run it filled was replaced
                job = self._jobs[key] = Job(time.time())
                threading.Thread(
                    target=self._work, args=(run, epoch, job), name="map-layout", daemon=True
                ).start()
        return job

    def _work(self, run: Run, epoch: int, job: Job) -> None:
        try:
            with self._slots:
                t0 = time.perf_counter()
                run.map_layout(epoch)
                log.info("map of %s epoch %d: %.1f s", run.name, epoch, time.perf_counter() - t0)
        except Exception as e:  # shown on the page; tried again after RETRY_S
            log.warning("map of %s epoch %d failed: %s: %s", run.name, epoch, type(e).__name__, e)
            job.error = f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            job.finished = time.time()
            job.done = True

    def __len__(self) -> int:
        return len(self._jobs)


JOBS = LayoutJobs()
