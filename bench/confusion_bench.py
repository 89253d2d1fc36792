"""Confusion explorer speed: server time and bytes per zoom/pan reply, epoch switch, warm start.

``run(quick)`` returns ``{name: Stat dict or number}``; ``python -m bench.confusion_bench``
prints it. Targets (issue 6): full 1000 x 1000 view at 250k points <= 100 ms, zoomed <= 50 ms,
5M points <= 250 ms, reply < 300 KB, next epoch's matrix < 300 ms, no numba compile on the
first render after start-up. Issue 16: the per-class table for 1000 classes and 50,000 images
<= 100 ms, a difference matrix reply <= 2 x a plain one.

A reply's server time here is what the page's matrix callback does: render the visible range
with datashader, build the figure, and encode it as JSON the way Dash does (Plotly's encoder).
Synthetic predictions (bench.synthetic_runs) stand in for a real run: the timing
depends on the number of non-empty cells, not on what the model learnt.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from bench.harness import stat, time_call
from bench.synthetic_runs import write_run
from dashboard.confusion import data, service
from dashboard.confusion.figure import PLOT_PX, matrix_spec
from dashboard.confusion.render import place, render, warm_up
from epochscope.analysis.confusion import confusion
from epochscope.analysis.ordering import cluster_order, index_order, positions
from epochscope.analysis.per_class import class_stats, table_rows

REPO = Path(__file__).resolve().parent.parent


def _ms(values: list[float]) -> dict:
    return stat([v * 1000 for v in values], "ms").as_dict()


def _reply(points, c: int, x, y) -> str:
    """One zoom reply for in-memory points: render, figure spec, JSON."""
    r = render(points, x, y, PLOT_PX, PLOT_PX, "eq_hist")
    spec, _ = matrix_spec(r, c, x, y, (), "bench")
    return service.figure_json(spec)


def _big_points(num_classes: int, images: int, seed: int = 0):
    """5M guesses: 10,000 classes, wrong guesses mostly within blocks of 10."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, images)
    block = (labels // 10) * 10
    top5 = (block[:, None] + rng.integers(0, 10, (images, 5))).astype(np.int64)
    top5[:, 0] = np.where(rng.random(images) < 0.6, labels, top5[:, 0])
    noisy = rng.random(top5.shape) < 0.3
    top5[noisy] = rng.integers(0, num_classes, int(noisy.sum()))
    return labels, top5


def _first_render_in_fresh_process() -> dict:
    """Start-up warm-up time and the first render after it, in a new interpreter."""
    code = (
        "import time, numpy as np\n"
        "from dashboard.confusion.render import warm_up, render, place\n"
        "from epochscope.analysis.confusion import confusion\n"
        "t = time.perf_counter(); warm_up(); w = time.perf_counter() - t\n"
        "rng = np.random.default_rng(0); labels = rng.integers(0, 1000, 50000)\n"
        "top5 = rng.integers(0, 1000, (50000, 5))\n"
        "pts = place(confusion(labels, top5, 1000, 'top5'), np.arange(1000))\n"
        "t = time.perf_counter(); render(pts, (0, 1000), (0, 1000), 680, 680)\n"
        "f = time.perf_counter() - t\n"
        "t = time.perf_counter(); render(pts, (0, 1000), (0, 1000), 680, 680)\n"
        "s = time.perf_counter() - t\n"
        "print(w, f, s)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    w, f, s = (float(v) for v in out.stdout.split())
    return {"warm_up_s": w, "first_render_ms": f * 1000, "second_render_ms": s * 1000}


def _error_analysis(run_dir: Path, last: int, repeats: int) -> dict:
    """Issue 16: the per-class table and the difference matrix, 1000 classes x 50,000 images.

    The per-class table's server time: per-class figures of this epoch, the previous one and
    a chosen one computed from the (already read) predictions, the 1000 rows, and their JSON.
    The difference reply (run A minus the same run at another epoch, full view) against the
    plain full-view reply, both with nothing cached but the predictions.
    """
    meta = data.run(run_dir)
    tops = {e: data.run(run_dir).predictions(e)[0] for e in (1, last - 1, last)}

    def table() -> str:
        now, prev, since = (class_stats(meta.labels, tops[e], 1000) for e in (last, last - 1, 1))
        rows = table_rows(now, meta.names, meta.wnids, meta.bands, prev, since)
        return json.dumps(rows)

    full = ((0, 1000), (0, 1000))
    other = service.Compare(data.run(run_dir), last - 1)

    def fresh(fn):
        def call():
            # what each view derives is computed again; histograms stay (the slider's
            # neighbours are usually cached)
            data.run(run_dir).forget("points", "difference_points", "difference", "cells")
            return fn()

        return call

    def plain() -> str:
        v = service.matrix_view(data.run(run_dir), last, "top5", "wordnet", "eq_hist", *full)
        return service.figure_json(v.figure)

    def diff() -> str:
        v = service.matrix_view(
            data.run(run_dir), last, "top5", "wordnet", "eq_hist", *full, compare=other
        )
        return service.figure_json(v.figure)

    diff()  # the other epoch's histogram, once
    plain_t = time_call(fresh(plain), repeats)
    diff_t = time_call(fresh(diff), repeats)
    return {
        "per_class_table_1000x50k": _ms(time_call(table, repeats)),
        "per_class_table_bytes": len(table().encode()),
        "reply_plain_full_uncached": _ms(plain_t),
        "reply_difference_full_uncached": _ms(diff_t),
        "difference_over_plain": float(np.median(diff_t) / np.median(plain_t)),
    }


def run(quick: bool = False) -> dict:
    repeats = 5 if quick else 15
    warm_up()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        # --- ImageNet-sized run directory: 1000 classes x 50 images, top-5 = 250k points
        epochs = 3 if quick else 6
        run_dir = write_run(Path(tmp) / "imagenet", num_classes=1000, per_class=50, epochs=epochs)
        last = epochs

        def view(x, y, epoch=last):
            v = service.matrix_view(data.run(run_dir), epoch, "top5", "wordnet", "eq_hist", x, y)
            return service.figure_json(v.figure)

        full, zoom = ((0, 1000), (0, 1000)), ((400, 500), (400, 500))
        results["reply_full_250k"] = _ms(time_call(lambda: view(*full), repeats))
        results["reply_zoomed_250k"] = _ms(time_call(lambda: view(*zoom), repeats))
        results["reply_bytes_full_250k"] = len(view(*full).encode())
        results["reply_bytes_zoomed_250k"] = len(view(*zoom).encode())
        conf = data.run(run_dir).confusion(last, "top5")
        results["points_250k_nonempty_cells"] = len(conf.counts)

        # a dense go.Heatmap of the same matrix, as the comparison the issue asks for
        dense = go.Figure(go.Heatmap(z=conf.dense()))
        results["dense_heatmap_bytes"] = len(service.figure_json(dense).encode())
        results["dense_heatmap_list_bytes"] = len(json.dumps({"z": conf.dense().tolist()}))
        results["bytes_ratio_dense_over_reply"] = (
            results["dense_heatmap_bytes"] / results["reply_bytes_full_250k"]
        )

        # the epoch slider: the next epoch, never seen by this process (read, histogram, render)
        switch = []
        for e in range(1, epochs + 1):
            data.clear()
            r = data.run(run_dir)  # the run's classes and labels stay read between epochs
            r.labels, r.names, r.bands  # noqa: B018
            t0 = time.perf_counter()
            view(*full, epoch=e)
            switch.append(time.perf_counter() - t0)
        results["epoch_switch_full_250k"] = _ms(switch)

        t0 = time.perf_counter()
        cluster_order(conf)
        results["cluster_order_1000_s"] = time.perf_counter() - t0
        results.update(_error_analysis(run_dir, last, repeats))

    # --- the worst case at 250k: guesses spread uniformly, nearly every point its own cell
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 1000, 50_000)
    uniform = place(
        confusion(labels, rng.integers(0, 1000, (50_000, 5)), 1000, "top5"), np.arange(1000)
    )
    results["points_250k_uniform_nonempty_cells"] = len(uniform.frame)
    results["reply_full_250k_uniform"] = _ms(
        time_call(lambda: _reply(uniform, 1000, (0, 1000), (0, 1000)), repeats)
    )
    results["reply_bytes_full_250k_uniform"] = len(_reply(uniform, 1000, (0, 1000), (0, 1000)))

    # --- 10,000 classes x 1,000,000 images, top-5: 5M points
    labels, top5 = _big_points(10_000, 1_000_000)
    t0 = time.perf_counter()
    big = confusion(labels, top5, 10_000, "top5")
    results["histogram_5M_s"] = time.perf_counter() - t0
    pts = place(big, positions(index_order(10_000)))
    results["points_5M_nonempty_cells"] = len(big.counts)
    full10k, zoom10k = ((0, 10_000), (0, 10_000)), ((4000, 4200), (4000, 4200))
    results["reply_full_5M"] = _ms(time_call(lambda: _reply(pts, 10_000, *full10k), repeats))
    results["reply_zoomed_5M"] = _ms(time_call(lambda: _reply(pts, 10_000, *zoom10k), repeats))
    results["reply_bytes_full_5M"] = len(_reply(pts, 10_000, *full10k).encode())
    t0 = time.perf_counter()
    cluster_order(big)
    results["cluster_order_10000_s"] = time.perf_counter() - t0

    results["fresh_process"] = _first_render_in_fresh_process()
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
