"""How cost grows with work: the demo's epoch time against its number of classes, and the
confusion explorer's histogram and reply time against points and classes.

Epochs are real ``python -m trainer train --demo --epochs 1`` runs on demo data of that many
classes at the demo's per-class counts (the epoch's ``epoch_seconds`` from metrics.jsonl:
training plus validation with prediction capture). The confusion grid uses the same synthetic
guesses as ``bench.confusion_bench`` (wrong guesses mostly within blocks of 10 classes).
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

from bench import fixtures
from bench.confusion_bench import _big_points, _reply
from bench.harness import stat, time_call
from dashboard.confusion.render import place, warm_up
from epochscope.analysis.confusion import confusion
from epochscope.analysis.ordering import index_order, positions


def epoch_growth(
    class_counts: tuple[int, ...], per_class: tuple[int, int], cache: Path, *extra: str
) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for classes in class_counts:
            data = fixtures.demo_data(classes, 32, *per_class, cache=cache)
            run = fixtures.train(data, Path(tmp), f"g{classes}", "--demo", "--epochs", "1", *extra)
            event = fixtures.epoch_events(run)[-1]
            out[str(classes)] = {
                "classes": classes,
                "train_images": classes * per_class[0],
                "val_images": classes * per_class[1],
                "epoch_seconds": event["epoch_seconds"],
                "train_img_per_s": event["img_per_s"],
                "val_img_per_s": event["val_img_per_s"],
            }
    return out


def confusion_growth(grid: tuple[tuple[int, int], ...], repeats: int) -> dict:
    """Per (classes, points): the histogram once (cached per epoch by the page) and the full
    view's reply (render, figure, JSON), median of ``repeats``."""
    warm_up()
    out = {}
    for classes, points in grid:
        labels, top5 = _big_points(classes, points // 5, seed=classes + points)
        t0 = time.perf_counter()
        hist = confusion(labels, top5, classes, "top5")
        histogram_s = time.perf_counter() - t0
        del labels, top5
        pts = place(hist, positions(index_order(classes)))
        view = ((0, classes), (0, classes))
        reply = time_call(lambda pts=pts, c=classes, v=view: _reply(pts, c, *v), repeats)
        out[f"{classes}x{points}"] = {
            "classes": classes,
            "points": points,
            "nonempty_cells": len(hist.counts),
            "histogram_ms": histogram_s * 1000,
            "reply_ms": stat([t * 1000 for t in reply], "ms").as_dict(),
        }
        del hist, pts
        gc.collect()
    return out


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    if quick:
        epochs = epoch_growth((2, 4), (8, 2), cache, "--batch-size", "8")
        grid = ((100, 10_000), (100, 50_000), (1000, 10_000), (1000, 50_000))
        return {"epoch": epochs, "confusion": confusion_growth(grid, 2)}
    per_class = (fixtures.DEMO_TRAIN_PER_CLASS, fixtures.DEMO_VAL_PER_CLASS)
    epochs = epoch_growth((100, 300, 1000), per_class, cache)
    grid = tuple((c, p) for c in (1000, 10_000) for p in (250_000, 5_000_000, 50_000_000))
    return {"epoch": epochs, "confusion": confusion_growth(grid, 3)}
