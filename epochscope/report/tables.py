"""The most confused pairs and the per-class table of an epoch (HTML, escaped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epochscope.analysis.confusion import most_confused
from epochscope.report.html import table
from epochscope.report.safe import esc, percent

if TYPE_CHECKING:
    from epochscope.run import Run

PAIRS = 30


def confused_pairs(run: Run, epoch: int, limit: int = PAIRS) -> list[tuple[int, int, int, float]]:
    """(true class, first guess, count, share of the class's images), most frequent wrong
    first guesses first."""
    pairs = most_confused(run.confusion(epoch, "top1"), limit=limit)
    return [(p.true, p.pred, p.count, p.share) for p in pairs]


def pairs_table(run: Run, epoch: int) -> str:
    names = run.names
    rows = [
        [(esc(names[t]), names[t]), (esc(names[p]), names[p]), (str(c), c),
         (percent(s), s)]
        for t, p, c, s in confused_pairs(run, epoch)
    ]  # fmt: skip
    if not rows:
        return ""
    heads = [("true class", False), ("taken for (top-1)", False), ("images", True),
             ("share of the class", True)]  # fmt: skip
    return table("es-pairs", heads, rows)


def class_table(run: Run, epoch: int) -> str:
    """Every class: display slot, name, band, images, top-1, top-5, most confused with."""
    stats = run.class_stats(epoch)
    slots = run.positions("wordnet")
    names, bands = run.names, run.bands
    rows = []
    for c in range(run.num_classes):
        other = int(stats.confused[c, 0]) if stats.confused.shape[1] else -1
        n_other = int(stats.confused_counts[c, 0]) if other >= 0 else 0
        top1, top5 = float(stats.top1[c]), float(stats.top5[c])
        rows.append([
            (str(int(slots[c])), int(slots[c])), (str(c), c), (esc(names[c]), names[c]),
            (esc(bands[c]), bands[c]), (str(int(stats.support[c])), int(stats.support[c])),
            (percent(top1), top1 if np.isfinite(top1) else ""),
            (percent(top5), top5 if np.isfinite(top5) else ""),
            (esc(f"{names[other]} ({n_other})"), names[other]) if other >= 0 else ("", ""),
        ])  # fmt: skip
    heads = [("slot", True), ("index", True), ("class", False), ("band", False),
             ("images", True), ("top-1", True), ("top-5", True),
             ("most taken for", False)]  # fmt: skip
    return table("es-classes-table", heads, rows)
