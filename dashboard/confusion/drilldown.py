"""Drill-down: the validation rows behind one cell, and the most confused pairs (their
thumbnails come from :mod:`epochscope.images`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from epochscope.analysis.confusion import Confusion, Mode, guesses


def pair_rows(
    labels: np.ndarray, top5: np.ndarray, true: int, pred: int, mode: Mode, limit: int = 48
) -> np.ndarray:
    """Validation rows with true label ``true`` whose counted guesses include ``pred``.

    Sorted by the rank of ``pred`` among the guesses (images that guessed it first come first),
    then by row; at most ``limit``.
    """
    g = guesses(np.asarray(top5), mode)
    hit = (np.asarray(labels) == true)[:, None] & (g == pred)
    rows, rank = np.nonzero(hit)
    # a row listed once, at its best rank (a malformed top-5 may repeat a class)
    rows, first = np.unique(rows, return_index=True)
    rank = rank[first]
    keep = np.lexsort((rows, rank))[:limit]
    return rows[keep]


@dataclass(frozen=True)
class Pair:
    true: int
    pred: int
    count: int
    share: float  # count / images of the true class


def most_confused(
    conf: Confusion, bands: list[str] | None = None, band: str | None = None, limit: int = 50
) -> list[Pair]:
    """Off-diagonal cells by count (largest first), optionally only where the true class or the
    predicted class is in ``band``."""
    off = conf.rows != conf.cols
    rows, cols, counts = conf.rows[off], conf.cols[off], conf.counts[off]
    if band and bands is not None:
        in_band = np.array([b == band for b in bands], dtype=bool)
        keep = in_band[rows] | in_band[cols]
        rows, cols, counts = rows[keep], cols[keep], counts[keep]
    if len(counts) > limit:
        top = np.argpartition(counts, -limit)[-limit:]
        rows, cols, counts = rows[top], cols[top], counts[top]
    order = np.lexsort((cols, rows, -counts.astype(np.int64)))
    images = conf.images
    return [
        Pair(int(r), int(c), int(n), float(n) / max(int(images[r]), 1))
        for r, c, n in zip(rows[order], cols[order], counts[order], strict=True)
    ]
