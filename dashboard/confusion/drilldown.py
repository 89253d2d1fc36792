"""Drill-down: the validation rows behind one cell (the most confused pairs are
:func:`epochscope.analysis.confusion.most_confused`; thumbnails come from
:mod:`epochscope.images`)."""

from __future__ import annotations

import numpy as np

from epochscope.analysis.confusion import Mode, guesses


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
