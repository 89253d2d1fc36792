"""What a matrix cell's colour stands for: the count, or the row-normalised share, with or
without the diagonal (hiding the correct guesses lets the mistakes use the whole colour ramp).

Row-normalised: a cell's share of its row's drawn guesses, i.e. of the true class's counted
predictions, or with the diagonal hidden of its mistakes. On a balanced validation set
(ImageNet: 50 images a class) with the diagonal shown this only relabels the colour bar; with
the diagonal hidden a class with few mistakes no longer looks dim beside one with many.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .histogram import Confusion

Norm = Literal["count", "row"]
NORMS: tuple[Norm, ...] = ("count", "row")


def cell_values(
    conf: Confusion, hide_diagonal: bool = False, norm: Norm = "count"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values) of the cells to draw. ``row``: count / images of the true class,
    the share of the true class's images that have the guess (what the tooltip says)."""
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}: expected one of {NORMS}")
    keep = conf.rows != conf.cols if hide_diagonal else np.ones(len(conf.rows), dtype=bool)
    rows, cols, counts = conf.rows[keep], conf.cols[keep], conf.counts[keep]
    if norm == "count":
        return rows, cols, counts.astype(np.float64)
    totals = row_totals(conf, hide_diagonal)
    return rows, cols, counts / np.maximum(totals[rows], 1)


def row_totals(conf: Confusion, hide_diagonal: bool = False) -> np.ndarray:
    """float64 [C]: the sum of each row's drawn cells (the row-normalised denominator)."""
    keep = conf.rows != conf.cols if hide_diagonal else slice(None)
    return np.bincount(conf.rows[keep], weights=conf.counts[keep], minlength=conf.num_classes)


def row_share(conf: Confusion, true: int, pred: int, hide_diagonal: bool = False) -> float:
    """One cell's row-normalised value, as ``cell_values`` colours it (0 for a hidden cell)."""
    if hide_diagonal and true == pred:
        return 0.0
    total = row_totals(conf, hide_diagonal)[true]
    return conf.count(true, pred) / total if total else 0.0


def value_label(norm: Norm) -> str:
    return "share of row" if norm == "row" else "count"
