"""The confusion histogram of one epoch, kept sparse (coordinate form).

A dense 10,000 x 10,000 int32 matrix is 400 MB; the coordinate form of an epoch holds only the
(true, predicted) pairs that occur, at most one per top-k guess: 250,000 for ImageNet's top-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["top5", "top1"]
MODES: tuple[Mode, ...] = ("top5", "top1")

# Up to this many cells a bincount over true*C+pred is faster than sorting (16 MB of int32)
BINCOUNT_CELLS = 4_200_000
# Up to this many classes a dense matrix is cheap enough to build on demand (64 MB of int32)
DENSE_LIMIT = 4096


@dataclass(frozen=True, eq=False)
class Confusion:
    """Counts of (true class, predicted class) pairs, sorted by true*C + pred.

    ``images`` counts the validation images of each true class: the denominator of a row's share
    (the share of a class's images whose top-k holds the predicted class).
    """

    num_classes: int
    mode: Mode
    rows: np.ndarray  # int32 [M] true class index
    cols: np.ndarray  # int32 [M] predicted class index
    counts: np.ndarray  # int32 [M] > 0
    images: np.ndarray  # int64 [C]

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.cols.nbytes + self.counts.nbytes + self.images.nbytes

    @property
    def keys(self) -> np.ndarray:
        return self.rows.astype(np.int64) * self.num_classes + self.cols

    def count(self, true: int, pred: int) -> int:
        """The count of one cell (0 when the pair never occurs)."""
        key = np.int64(true) * self.num_classes + pred
        keys = self.keys
        i = int(np.searchsorted(keys, key))
        return int(self.counts[i]) if i < len(keys) and keys[i] == key else 0

    def share(self, true: int, pred: int) -> float:
        """count / images of the true class (0 for a class without images)."""
        n = int(self.images[true])
        return self.count(true, pred) / n if n else 0.0

    def dense(self) -> np.ndarray:
        """The full int32 [C, C] matrix; refuses sizes where the sparse form exists for."""
        if self.num_classes > DENSE_LIMIT:
            mb = self.num_classes**2 * 4 >> 20
            raise ValueError(
                f"{self.num_classes} classes: a dense matrix would take {mb} MB; use the sparse"
                " form (.rows, .cols, .counts) or .crop a range"
            )
        out = np.zeros((self.num_classes, self.num_classes), dtype=np.int32)
        out[self.rows, self.cols] = self.counts
        return out

    def diagonal(self) -> np.ndarray:
        """int64 [C]: the count of each class's own cell (correct guesses)."""
        out = np.zeros(self.num_classes, dtype=np.int64)
        on = self.rows == self.cols
        out[self.rows[on]] = self.counts[on]
        return out


def guesses(top5: np.ndarray, mode: Mode) -> np.ndarray:
    """The guesses that count in ``mode``: all five columns, or the first."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: expected one of {MODES}")
    return top5[:, :5] if mode == "top5" else top5[:, :1]


def confusion(labels: np.ndarray, top5: np.ndarray, num_classes: int, mode: Mode) -> Confusion:
    """The confusion histogram of (true label, each counted guess).

    ``labels`` int [N], ``top5`` int [N, 5] (best first). Guesses outside 0..C-1 (a partial
    file, padding) are dropped rather than counted in a wrong cell.
    """
    labels = np.asarray(labels)
    top5 = np.asarray(top5)
    if top5.ndim != 2 or top5.shape[0] != labels.shape[0]:
        raise ValueError(f"labels {labels.shape} and top5 {top5.shape} do not match")
    c = int(num_classes)
    pred = guesses(top5, mode).astype(np.int64)
    true = np.broadcast_to(labels.astype(np.int64)[:, None], pred.shape)
    ok = (pred >= 0) & (pred < c) & (true >= 0) & (true < c)
    keys = (true[ok] * c + pred[ok]).ravel()
    if c * c <= BINCOUNT_CELLS:
        hist = np.bincount(keys, minlength=c * c)
        uniq = np.flatnonzero(hist)
        counts = hist[uniq]
    else:
        uniq, counts = np.unique(keys, return_counts=True)
    valid_labels = labels[(labels >= 0) & (labels < c)].astype(np.int64)
    return Confusion(
        num_classes=c,
        mode=mode,
        rows=(uniq // c).astype(np.int32),
        cols=(uniq % c).astype(np.int32),
        counts=counts.astype(np.int32),
        images=np.bincount(valid_labels, minlength=c).astype(np.int64),
    )


def crop(conf: Confusion, positions: np.ndarray, x_range, y_range) -> Confusion:
    """The cells whose display position lies in [x0, x1) x [y0, y1) (positions[class] = slot).

    Columns are predicted classes (x), rows true classes (y). Used for exports and tests; the
    renderer lets datashader drop the points outside its ranges.
    """
    x0, x1 = sorted(x_range)
    y0, y1 = sorted(y_range)
    px = positions[conf.cols]
    py = positions[conf.rows]
    keep = (px >= np.floor(x0)) & (px < x1) & (py >= np.floor(y0)) & (py < y1)
    return Confusion(
        conf.num_classes,
        conf.mode,
        conf.rows[keep],
        conf.cols[keep],
        conf.counts[keep],
        conf.images,
    )


# --- cell values: counts or row-normalised shares, with or without the diagonal ---------------
# What a matrix cell's colour stands for: the count, or the row-normalised share, with or
# without the diagonal (hiding the correct guesses lets the mistakes use the whole colour ramp).
#
# Row-normalised: a cell's share of its row's drawn guesses, i.e. of the true class's counted
# predictions, or with the diagonal hidden of its mistakes. On a balanced validation set
# (ImageNet: 50 images a class) with the diagonal shown this only relabels the colour bar; with
# the diagonal hidden a class with few mistakes no longer looks dim beside one with many.

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


@dataclass(frozen=True)
class Pair:
    true: int
    pred: int
    count: int
    share: float  # count / images of the true class


def most_confused(
    conf: Confusion, bands: list[str] | None = None, band: str | None = None, limit: int = 50
) -> list[Pair]:
    """Off-diagonal cells by count (largest first; ties by true, then predicted class),
    optionally only where the true class or the predicted class is in ``band``."""
    off = conf.rows != conf.cols
    rows, cols, counts = conf.rows[off], conf.cols[off], conf.counts[off]
    if band and bands is not None:
        in_band = np.array([b == band for b in bands], dtype=bool)
        keep = in_band[rows] | in_band[cols]
        rows, cols, counts = rows[keep], cols[keep], counts[keep]
    if len(counts) > limit:  # the cells that can make the cut, ties at it included
        keep = counts >= np.partition(counts, -limit)[-limit]
        rows, cols, counts = rows[keep], cols[keep], counts[keep]
    order = np.lexsort((cols, rows, -counts.astype(np.int64)))[:limit]
    images = conf.images
    return [
        Pair(int(r), int(c), int(n), float(n) / max(int(images[r]), 1))
        for r, c, n in zip(rows[order], cols[order], counts[order], strict=True)
    ]
