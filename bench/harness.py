"""Timing helpers shared by the benchmarks: warm-up, repeats, median with min and max.

Every figure the suite reports is a ``Stat`` (median, min, max over repeats); ratios compare
two stats measured in the same run, on the same device and threads, interleaved so that a noisy
neighbour slows both sides alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Stat:
    median: float
    min: float
    max: float
    repeats: int
    unit: str

    def as_dict(self) -> dict:
        return asdict(self)


def stat(values: list[float], unit: str) -> Stat:
    return Stat(statistics.median(values), min(values), max(values), len(values), unit)


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rate(items: int, seconds: list[float], unit: str = "img/s") -> Stat:
    """Throughput from per-repeat durations of ``items`` items each."""
    return stat([items / s for s in seconds], unit)


def interleaved(
    a: Callable[[], object], b: Callable[[], object], repeats: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately (a, b, a, b, ...) so drift in machine load hits both."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return ta, tb


def ratio(a: list[float], b: list[float]) -> Stat:
    """Per-repeat ratios of rates a/b given durations (so the ratio is b_time / a_time)."""
    return stat([tb / ta for ta, tb in zip(a, b, strict=True)], "ratio")
