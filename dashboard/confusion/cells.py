"""What a matrix cell's colour stands for: the count, or the row-normalised share, with or
without the diagonal (hiding the correct guesses lets the mistakes use the whole colour ramp)."""

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
    images = np.maximum(conf.images[rows], 1)
    return rows, cols, counts / images


def value_label(norm: Norm) -> str:
    return "share of row" if norm == "row" else "count"
