"""Waiting in tests without failing on a busy machine, and still failing on a real hang.

A fixed limit ("120 s for the first epoch") means "slow" on a quiet box and "hung" on a busy
one. Every wait here spends its budget at the speed the machine is running: a second of wall
time counts as ``1 / slowness()`` seconds of budget, where slowness is the run queue per core.
A subprocess is hung only when it neither prints nor uses CPU for its whole silence budget; a
training run that is still writing epochs never is. Each failure says what it waited for.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
MAX_SLOWNESS = 8.0  # beyond this the box is not busy but broken: let the limits bite


def slowness() -> float:
    """How many times slower than an idle box work runs now: runnable tasks per core, at least
    1. The one-minute load average lags, so the larger of it and the instant run queue."""
    cores = os.cpu_count() or 1
    running = _running_tasks()
    return min(MAX_SLOWNESS, max(1.0, os.getloadavg()[0] / cores, running / cores))


def _running_tasks() -> float:
    try:  # /proc/loadavg's 4th field: runnable/total (this reader itself is one of them)
        return max(0.0, float(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return 0.0


class Budget:
    """``seconds`` of work at an idle box's speed, spent slower while the machine is busy."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spent = 0.0
        self._last = time.monotonic()
        self._speed = 1.0 / slowness()
        self._checked = self._last

    def left(self) -> float:
        now = time.monotonic()
        if now - self._checked > 1.0:  # reading the load costs little, but not every poll
            self._speed, self._checked = 1.0 / slowness(), now
        self.spent += (now - self._last) * self._speed
        self._last = now
        return self.seconds - self.spent

    def restart(self) -> None:
        self.spent = 0.0


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.1,
    proc: subprocess.Popen | None = None,
) -> T:
    """Poll ``predicate`` until it is truthy; ``timeout`` is seconds on an idle machine. With
    ``proc``, the process must stay alive meanwhile (its exit fails the wait at once)."""
    budget, value = Budget(timeout), None
    start = time.monotonic()
    while budget.left() > 0:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} while waiting for {what}")
        time.sleep(interval)
    waited = time.monotonic() - start
    raise AssertionError(
        f"timed out after {waited:.0f} s ({timeout} s at idle speed) waiting for {what} "
        f"(last: {value!r})"
    )


def _cpu_by_pid(proc: psutil.Process) -> dict[int, float]:
    """CPU seconds used so far by ``proc`` and each of its descendants, by pid."""
    seen: dict[int, float] = {}
    for p in [proc, *_children(proc)]:
        try:
            t = p.cpu_times()
            seen[p.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return seen


def run_watched(
    cmd: Sequence[str],
    silence: float,
    what: str,
    cpu_step: float = 0.5,
    **popen: Any,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` to the end, capturing text output. It is hung (killed, AssertionError) only
    after ``silence`` seconds (at idle speed) in which it printed nothing and its process tree
    used under ``cpu_step`` s of CPU: slow work always makes one of the two."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    chunks: dict[str, list[str]] = {"out": [], "err": []}
    heard = threading.Event()

    def pump(stream, sink: list[str]) -> None:
        for line in iter(stream.readline, ""):
            sink.append(line)
            heard.set()
        stream.close()

    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, chunks["out"]), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, chunks["err"]), daemon=True),
    ]
    for t in pumps:
        t.start()
    watched = psutil.Process(proc.pid)
    budget, cpu, used = Budget(silence), _cpu_by_pid(watched), 0.0
    start = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.2)
        now = _cpu_by_pid(watched)  # a process that exits takes its seconds along: count rises
        used += sum(max(0.0, t - cpu.get(pid, 0.0)) for pid, t in now.items())
        cpu = now
        if heard.is_set() or used >= cpu_step:
            heard.clear()
            used = 0.0
            budget.restart()
        if budget.left() <= 0:
            for p in [*_children(watched), watched]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            proc.wait()
            for t in pumps:
                t.join(5)
            out, err = "".join(chunks["out"]), "".join(chunks["err"])
            raise AssertionError(
                f"{what}: no output and no CPU for {silence} s (idle speed) after "
                f"{time.monotonic() - start:.0f} s: hung\n--- stdout\n{out[-3000:]}\n"
                f"--- stderr\n{err[-3000:]}"
            )
    for t in pumps:
        t.join(30)
    return subprocess.CompletedProcess(
        list(cmd), proc.returncode, "".join(chunks["out"]), "".join(chunks["err"])
    )


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def wait_exit(proc: subprocess.Popen, timeout: float, what: str) -> int:
    """``proc``'s exit status; ``timeout`` is seconds on an idle machine (see ``wait_for``)."""
    wait_for(lambda: proc.poll() is not None, timeout, f"{what} to exit", interval=0.2)
    return proc.returncode


def stretched(limit: float) -> float:
    """A latency limit for what a test measures now: ``limit`` on an idle machine, that many
    times longer while the machine runs that many times slower."""
    return limit * slowness()


def idle_ms(seconds: float) -> float:
    """A browser wait in Playwright's milliseconds: ``seconds`` on an idle machine."""
    return seconds * 1000 * slowness()
