"""Section ``similar_knn``: a photo's 10 nearest validation images against the model's own top-1
on held-out real photos (slow: trains a run; see :mod:`bench.similar_bench`)."""

from __future__ import annotations

from bench.similar_bench import run_knn


def run(quick: bool = False) -> dict:
    return run_knn(quick)
