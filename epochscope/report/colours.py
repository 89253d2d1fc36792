"""The report's colours: a sequential map for shares, a diverging one for differences, and a
colour per band. Pure numpy; the browser test reads the same map to check a cell's pixel."""

from __future__ import annotations

import hashlib

import numpy as np

#: what an empty cell is drawn with
BACKGROUND = (16, 16, 24)
#: the smallest share the colour map tells apart (a log scale from here to 1)
FLOOR = 1e-3
# dark blue -> purple -> orange -> pale yellow (datashader's "fire"-like ramp)
_ANCHORS = np.array(
    [(40, 30, 90), (110, 40, 150), (200, 60, 90), (245, 140, 40), (255, 230, 120), (255, 255, 230)],
    dtype=np.float64,
)
_DIVERGING = np.array(
    [(30, 80, 200), (130, 170, 235), (240, 240, 240), (240, 150, 120), (200, 30, 40)],
    dtype=np.float64,
)


def _ramp(anchors: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0) * (len(anchors) - 1)
    i = np.minimum(t.astype(np.int64), len(anchors) - 2)
    f = (t - i)[..., None]
    return np.rint(anchors[i] * (1 - f) + anchors[i + 1] * f).astype(np.uint8)


def share_colours(share: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] of row shares in 0..1 (log scale from :data:`FLOOR`); 0 is the
    background."""
    share = np.asarray(share, dtype=np.float64)
    t = (np.log10(np.maximum(share, FLOOR)) - np.log10(FLOOR)) / -np.log10(FLOOR)
    rgb = _ramp(_ANCHORS, t)
    rgb[share <= 0] = BACKGROUND
    return rgb


def difference_colours(diff: np.ndarray, scale: float) -> np.ndarray:
    """uint8 RGB of differences of shares: blue where the compared run's is higher, red
    where this run's is, grey-white near 0 (``scale``: the difference drawn at full colour)."""
    diff = np.asarray(diff, dtype=np.float64)
    t = 0.5 + 0.5 * np.sign(diff) * np.sqrt(np.minimum(np.abs(diff) / max(scale, 1e-9), 1.0))
    rgb = _ramp(_DIVERGING, t)
    rgb[diff == 0] = BACKGROUND
    return rgb


def band_colour(band: str) -> tuple[int, int, int]:
    """A stable, fairly bright colour of a band name (grey for no band)."""
    if not band:
        return (90, 90, 90)
    h = hashlib.sha256(band.encode("utf-8")).digest()
    hue = h[0] / 255.0
    # HSV to RGB at saturation 0.6, value 0.9
    i, f = int(hue * 6) % 6, hue * 6 - int(hue * 6)
    v, s = 0.9, 0.6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(255 * r), round(255 * g), round(255 * b))


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
