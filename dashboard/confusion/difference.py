"""The difference of two confusion matrices (run A minus run B, or one run at two epochs).

A cell's value is share A - share B: the change in the fraction of the true class's images
whose guesses hold the predicted class. Shares, not counts, so two runs whose validation sets
differ in size still compare. Drawn with a diverging palette (blue: B higher, red: A higher)
symmetric around zero; unchanged cells are left empty.
"""

from __future__ import annotations

import numpy as np

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
