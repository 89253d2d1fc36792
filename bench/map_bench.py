"""Embedding map: layout time per epoch and the server time of a map reply (issue 24).

``run(quick)`` returns ``{name: Stat dict or number}``; ``python -m bench.map_bench`` prints
it. Targets: a rendered map reply from a cached layout <= 100 ms at 50,000 points (every point
drawn: datashader over the visible range, the figure, JSON as Dash sends it); the layout time
per epoch at 50,000 x 128 (UMAP, one thread: a fixed random_state) is reported.

Synthetic features (bench.synthetic_embeddings) on a 1,000-class WordNet run stand in
for a network's: the times depend on the number of points and dimensions, not on what a model
learnt.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import stat, time_call
from bench.synthetic_embeddings import write_embeddings
from bench.synthetic_runs import write_run
from dashboard.confusion.service import figure_json
from dashboard.embedding_map import service
from dashboard.kit.points import warm_up
from epochscope import maps
from epochscope.analysis.embedding_map import layout
from epochscope.run import open_run


def _ms(values: list[float]) -> dict:
    return stat([v * 1000 for v in values], "ms").as_dict()


def run(quick: bool = False) -> dict:
    classes, per_class = (100, 20) if quick else (1000, 50)
    repeats = 5 if quick else 30
    out: dict = {"points": classes * per_class}
    before = os.environ.get(maps.CACHE_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[maps.CACHE_ENV] = str(Path(tmp) / "cache")
        run_dir = write_run(Path(tmp) / "runs" / "map", classes, per_class, epochs=1)
        write_embeddings(run_dir, dims=256)  # 256 features -> the stored 128 PCA dimensions
        opened = open_run(run_dir)
        vectors = opened.embeddings(1).vectors
        out["dims"] = int(vectors.shape[1])

        # the layout: numba compiles UMAP's kernels once per process (reported apart)
        t0 = time.perf_counter()
        layout(vectors[:300])
        out["layout_compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        coords = layout(vectors)
        out["layout_s"] = time.perf_counter() - t0
        path = maps.layout_path(run_dir, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, coords)

        # a fresh Run's first view: the cached layout read, points and KD-tree built
        warm_up()
        firsts = []
        for _ in range(3):
            fresh = open_run(run_dir)
            t0 = time.perf_counter()
            figure_json(service.map_view(fresh, 1, "band").figure)
            firsts.append(time.perf_counter() - t0)
        out["first_view_from_cache"] = _ms(firsts)

        def reply(x=(-1.05, 1.05), y=(-1.05, 1.05), by="band") -> int:
            view = service.map_view(opened, 1, by, x, y)  # type: ignore[arg-type]
            assert view.state == "ready" and view.drawn > 0, view.message
            return len(figure_json(view.figure))

        out["reply_full"] = _ms(time_call(reply, repeats))
        out["reply_zoomed"] = _ms(time_call(lambda: reply((-0.2, 0.2), (-0.2, 0.2)), repeats))
        out["reply_by_class"] = _ms(time_call(lambda: reply(by="class"), repeats))
        out["reply_bytes"] = reply()
        out["drawn_full"] = service.map_view(opened, 1, "band").drawn

        t0 = time.perf_counter()
        opened.band_silhouette(1)
        out["silhouette_ms"] = (time.perf_counter() - t0) * 1000
    if before is None:
        os.environ.pop(maps.CACHE_ENV, None)
    else:
        os.environ[maps.CACHE_ENV] = before
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
