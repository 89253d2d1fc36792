"""The difference of two confusion matrices (run A minus run B, or one run at two epochs).

A cell's value is share A - share B: the change in the fraction of the true class's images
whose guesses hold the predicted class. Shares, not counts, so two runs whose validation sets
differ in size still compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from epochscope.analysis.confusion import Confusion


class ClassMismatch(ValueError):
    """Two runs whose classes differ: their matrices do not line up cell by cell."""


def check_same_classes(wnids_a: Sequence[str], wnids_b: Sequence[str], a: str, b: str) -> None:
    """Refuse, with what differs, two class lists that are not the same in the same order."""
    if list(wnids_a) == list(wnids_b):
        return
    only_a = sorted(set(wnids_a) - set(wnids_b))
    only_b = sorted(set(wnids_b) - set(wnids_a))
    detail = f"{a} has {len(wnids_a)} classes, {b} has {len(wnids_b)}"
    if only_a or only_b:
        detail += f"; only in {a}: {', '.join(only_a[:5]) or 'none'}"
        detail += f"; only in {b}: {', '.join(only_b[:5]) or 'none'}"
    else:
        detail += "; the same classes in another index order"
    raise ClassMismatch(f"cannot compare {a} with {b}: their class sets differ ({detail})")


def _shares(conf: Confusion) -> tuple[np.ndarray, np.ndarray]:
    return conf.keys, conf.counts / np.maximum(conf.images[conf.rows], 1)


def difference_cells(
    a: Confusion, b: Confusion, hide_diagonal: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, share A - share B) of every cell that differs (keys merged, both sorted)."""
    if a.num_classes != b.num_classes:
        raise ClassMismatch(f"{a.num_classes} classes against {b.num_classes}")
    c = a.num_classes
    ka, sa = _shares(a)
    kb, sb = _shares(b)
    keys = np.union1d(ka, kb)
    values = np.zeros(len(keys), dtype=np.float64)
    values[np.searchsorted(keys, ka)] += sa
    values[np.searchsorted(keys, kb)] -= sb
    rows, cols = (keys // c).astype(np.int32), (keys % c).astype(np.int32)
    keep = values != 0
    if hide_diagonal:
        keep &= rows != cols
    return rows[keep], cols[keep], values[keep]
