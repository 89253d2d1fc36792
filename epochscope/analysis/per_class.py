"""Per-class accuracy of one epoch: top-1, top-5, support and the classes each is confused with.

Pure numpy over an epoch's predictions (labels [N], top5 [N, 5]); the page's table rows are
built from these arrays. 1000 classes x 50,000 images take a few milliseconds (bench key
``per_class_table_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFUSED_K = 3  # classes named in "most confused with"


@dataclass(frozen=True, eq=False)
class ClassStats:
    """Per-class figures of one epoch, index order. Accuracies are NaN for a class without
    validation images (nothing to measure, not 0%)."""

    support: np.ndarray  # int64 [C]: validation images of the class
    top1: np.ndarray  # float64 [C]: share whose first guess is the class
    top5: np.ndarray  # float64 [C]: share with the class among the five guesses
    confused: np.ndarray  # int64 [C, K]: most frequent wrong first guesses, -1 = none
    confused_counts: np.ndarray  # int64 [C, K]

    @property
    def num_classes(self) -> int:
        return len(self.support)


def class_stats(
    labels: np.ndarray, top5: np.ndarray, num_classes: int, k: int = CONFUSED_K
) -> ClassStats:
    """The per-class figures of one epoch's predictions (guesses outside 0..C-1 never match)."""
    labels = np.asarray(labels, dtype=np.int64)
    top5 = np.asarray(top5, dtype=np.int64)
    if top5.ndim != 2 or top5.shape[0] != labels.shape[0]:
        raise ValueError(f"labels {labels.shape} and top5 {top5.shape} do not match")
    c = int(num_classes)
    ok = (labels >= 0) & (labels < c)
    labels, top5 = labels[ok], top5[ok]
    support = np.bincount(labels, minlength=c).astype(np.int64)
    first = top5[:, 0]
    hit1 = first == labels
    hit5 = (top5[:, :5] == labels[:, None]).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        top1 = np.bincount(labels, weights=hit1, minlength=c) / support
        acc5 = np.bincount(labels, weights=hit5, minlength=c) / support
    confused, counts = _confused(labels[~hit1], first[~hit1], c, k)
    return ClassStats(support, top1, acc5, confused, counts)


def _confused(true: np.ndarray, pred: np.ndarray, c: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per true class the k most frequent wrong guesses (ties: lower index first)."""
    valid = (pred >= 0) & (pred < c)
    keys, n = np.unique(true[valid] * c + pred[valid], return_counts=True)
    rows, cols = keys // c, keys % c
    order = np.lexsort((cols, -n, rows))  # by row, then count descending
    rows, cols, n = rows[order], cols[order], n[order]
    # rank of each cell within its row: position minus the row's first position
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - starts
    keep = rank < k
    out = np.full((c, k), -1, dtype=np.int64)
    out_n = np.zeros((c, k), dtype=np.int64)
    out[rows[keep], rank[keep]] = cols[keep]
    out_n[rows[keep], rank[keep]] = n[keep]
    return out, out_n


def _pct(v: float) -> float | None:
    return None if not np.isfinite(v) else round(100.0 * float(v), 1)


def _delta(now: np.ndarray, then: ClassStats | None, i: int) -> float | None:
    if then is None or not (np.isfinite(now[i]) and np.isfinite(then.top1[i])):
        return None
    return round(100.0 * float(now[i] - then.top1[i]), 1)


def table_rows(
    stats: ClassStats,
    names: Sequence[str],
    wnids: Sequence[str],
    bands: Sequence[str],
    previous: ClassStats | None = None,
    since: ClassStats | None = None,
    compare: ClassStats | None = None,
) -> list[dict[str, Any]]:
    """Rows of the per-class table: percentages rounded to 0.1, deltas in percentage points
    of top-1 (None where either side has no images). ``compare``: the other side of a
    comparison (run B or the other epoch), giving ``top1_b`` and ``delta_b`` = this - that."""
    rows = []
    for i in range(stats.num_classes):
        confused = [
            f"{names[j]} ({n})"
            for j, n in zip(stats.confused[i], stats.confused_counts[i], strict=True)
            if j >= 0
        ]
        row = {
            "index": i,
            "name": names[i],
            "wnid": wnids[i],
            "band": bands[i],
            "support": int(stats.support[i]),
            "top1": _pct(stats.top1[i]),
            "top5": _pct(stats.top5[i]),
            "d_prev": _delta(stats.top1, previous, i),
            "d_since": _delta(stats.top1, since, i),
            "confused": ", ".join(confused),
        }
        if compare is not None:
            row["top1_b"] = _pct(compare.top1[i])
            row["delta_b"] = _delta(stats.top1, compare, i)
        rows.append(row)
    return rows


def band_accuracy(
    labels: np.ndarray, top5: np.ndarray, bands: Sequence[str], groups: Sequence[str], top: int = 1
) -> dict[str, float]:
    """Accuracy (top-1 or top-5) of the images of each band and each group (animals, objects),
    keyed by name; a name with no images is left out."""
    labels = np.asarray(labels, dtype=np.int64)
    top5 = np.asarray(top5, dtype=np.int64)
    hit = (top5[:, :top] == labels[:, None]).any(axis=1)
    out: dict[str, float] = {}
    for names in (groups, bands):
        uniq, code = np.unique(np.asarray(names, dtype=str), return_inverse=True)
        per_image = code[labels]
        n = np.bincount(per_image, minlength=len(uniq))
        good = np.bincount(per_image, weights=hit, minlength=len(uniq))
        for j, name in enumerate(uniq):
            if name and n[j]:
                out[str(name)] = float(good[j] / n[j])
    return out
