"""The difference of two confusion matrices (run A minus run B, or one run at two epochs).

A cell's value is share A - share B: the change in the fraction of the true class's images
whose guesses hold the predicted class. Shares, not counts, so two runs whose validation sets
differ in size still compare. Drawn with a diverging palette (blue: B higher, red: A higher)
symmetric around zero; unchanged cells are left empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .histogram import Confusion
from .render import (
    ColourBar,
    Points,
    Rendered,
    aggregate,
    encode_image,
    palette,
    visible_axis,
)

NEGATIVE, ZERO, POSITIVE = "#2166ac", "#3a3a3a", "#d6604d"
DIVERGING_STOPS: tuple[tuple[float, str], ...] = (
    (0.0, "#053061"),
    (0.25, NEGATIVE),
    (0.5, ZERO),
    (0.75, POSITIVE),
    (1.0, "#fddbc7"),
)


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


DIVERGING_PALETTE = palette(DIVERGING_STOPS)
PLOTLY_DIVERGING = [[s, c] for s, c in DIVERGING_STOPS]


def diverging_indices(agg: np.ndarray) -> tuple[np.ndarray, ColourBar]:
    """Palette indices symmetric around zero (index 128 = no change; 0 = empty pixel).

    A square root of the magnitude, so that the many small changes stay visible beside the
    few large ones; the colour bar's ticks are the values at those positions.
    """
    filled = np.isfinite(agg) & (agg != 0)
    out = np.zeros(agg.shape, dtype=np.uint8)
    values = agg[filled]
    if values.size == 0:
        return out, ColourBar()
    vmax = float(np.abs(values).max())
    t = 0.5 + 0.5 * np.sign(values) * np.sqrt(np.abs(values) / vmax)
    out[filled] = 1 + np.round(np.clip(t, 0.0, 1.0) * 254).astype(np.uint8)
    fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
    ticks = [float(np.sign(f - 0.5) * ((2 * f - 1) ** 2) * vmax) for f in fractions]
    return out, ColourBar(fractions, ticks, -vmax, vmax)


def render_difference(
    points: Points,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    keep_agg: bool = False,
) -> Rendered:
    """Like ``render.render`` with the diverging palette: a pixel's value is the sum of the
    differences of the cells it covers."""
    c = points.num_classes
    x = visible_axis(x_range, c, max(int(width), 1))
    y = visible_axis(y_range, c, max(int(height), 1))
    agg = aggregate(points, x, y)
    indices, bar = diverging_indices(agg)
    image, mime = encode_image(indices, DIVERGING_PALETTE)
    return Rendered(image, x, y, bar, agg if keep_agg else None, mime)
