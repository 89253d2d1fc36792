"""Render the visible part of the matrix to a PNG with datashader.

Coordinates are display slots: class at slot s covers [s, s + 1) on its axis; x is the predicted
class, y the true class, y grows downwards on screen (row 0 at the top).

Datashader aggregates the points (one per non-empty cell, weighted by its count) over exactly
the visible range. When more classes are visible than pixels, the canvas has the graph's pixel
size; when fewer, it has one pixel per class over the range snapped to whole classes, and the
browser enlarges it with ``image-rendering: pixelated`` so each cell stays a crisp square.
Colours are mapped here, not by ``tf.shade``: an 8-bit palette PNG is a quarter of the bytes of
RGBA and encodes several times faster, and the colour bar's ticks come from the same mapping.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import datashader as ds
import numpy as np
import pandas as pd
from PIL import Image

from dashboard.kit.zoom import BACKGROUND
from epochscope.analysis.confusion import Confusion

Scale = Literal["linear", "log", "eq_hist"]
SCALES: tuple[Scale, ...] = ("eq_hist", "log", "linear")

# The seed's look: dark green for rare cells, bright green for frequent ones, on near black.
COLOUR_STOPS: tuple[tuple[float, str], ...] = (
    (0.0, "#0f3d1e"),
    (0.35, "#1f7a33"),
    (0.7, "#4fc94a"),
    (1.0, "#e6ff8a"),
)


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def palette(stops: Sequence[tuple[float, str]]) -> np.ndarray:
    """uint8 [256, 3] from (position, '#rrggbb') stops: entry 0 is the (transparent) empty
    cell, 1..255 the colour ramp."""
    at = np.array([s for s, _ in stops])
    rgb = np.array([_hex(c) for _, c in stops], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 255)
    ramp = np.stack([np.interp(t, at, rgb[:, k]) for k in range(3)], axis=1)
    return np.vstack([_hex(BACKGROUND), np.round(ramp)]).astype(np.uint8)


PALETTE = palette(COLOUR_STOPS)
RGBA_PALETTE = np.hstack([PALETTE, np.full((256, 1), 255, dtype=np.uint8)])
RGBA_PALETTE[0, 3] = 0  # empty cells: transparent
PLOTLY_COLORSCALE = [[s, c] for s, c in COLOUR_STOPS]


@dataclass(frozen=True, eq=False)
class Points:
    """The non-empty cells of a confusion at their display slots, ready for datashader."""

    frame: pd.DataFrame  # x, y: slot + 0.5 (cell centres), n: count; all float32
    num_classes: int

    @property
    def nbytes(self) -> int:
        return int(self.frame.memory_usage(index=False).sum())


def place(conf: Confusion, pos: np.ndarray) -> Points:
    """Points of ``conf`` with class c at slot ``pos[c]`` (positions of an order)."""
    return place_cells(conf.rows, conf.cols, conf.counts, pos, conf.num_classes)


def place_cells(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, pos: np.ndarray, num_classes: int
) -> Points:
    """Points of cells given as (true, predicted, value) at the slots ``pos`` gives; values may
    be shares or signed differences."""
    frame = pd.DataFrame(
        {
            "x": pos[cols].astype(np.float32) + np.float32(0.5),
            "y": pos[rows].astype(np.float32) + np.float32(0.5),
            "n": np.asarray(values).astype(np.float32),
        }
    )
    return Points(frame, num_classes)


@dataclass(frozen=True)
class Axis:
    """What one axis of the image covers: [lo, hi) in slots drawn with ``pixels`` pixels."""

    lo: float
    hi: float
    pixels: int

    @property
    def per_class(self) -> bool:
        """One pixel per class (the zoomed-in case)."""
        return self.pixels == round(self.hi - self.lo) and float(self.lo).is_integer()


def visible_axis(rng: tuple[float, float], num_classes: int, pixels: int) -> Axis:
    """The image extent for a visible axis range (either orientation, clamped to the matrix)."""
    lo, hi = sorted(float(v) for v in rng)
    lo = min(max(lo, 0.0), num_classes - 1.0)
    hi = max(min(hi, float(num_classes)), lo + 1e-6)
    first, last = math.floor(lo), math.ceil(hi)
    if last - first <= pixels:
        return Axis(float(first), float(last), int(last - first))
    return Axis(lo, hi, int(pixels))


@dataclass(frozen=True)
class ColourBar:
    """Colour-bar ticks: positions 0..1 along the colour ramp and the counts they stand for."""

    fractions: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    vmin: float = 0.0
    vmax: float = 0.0


@dataclass(frozen=True)
class Rendered:
    image: bytes  # PNG; WebP (lossless) for the rare view where that is much smaller
    x: Axis
    y: Axis
    colourbar: ColourBar
    agg: np.ndarray | None = None  # the aggregate (float64 [h, w], NaN = empty), kept for tests
    mime: str = "image/png"

    @property
    def width(self) -> int:
        return self.x.pixels

    @property
    def height(self) -> int:
        return self.y.pixels

    def data_uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.image).decode("ascii")


def aggregate(points: Points, x: Axis, y: Axis) -> np.ndarray:
    """float64 [y.pixels, x.pixels] sums of counts per pixel; NaN where no cell falls."""
    canvas = ds.Canvas(
        plot_width=x.pixels, plot_height=y.pixels, x_range=(x.lo, x.hi), y_range=(y.lo, y.hi)
    )
    agg = canvas.points(points.frame, "x", "y", agg=ds.sum("n"))
    return np.asarray(agg.data)


def _value_histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True, return_counts=True), in linear time for the
    usual case of whole counts (a sort of 500k pixels costs ~50 ms; a bincount ~3 ms)."""
    whole = values.astype(np.int64)
    if whole.size and whole.max() < (1 << 22) and np.array_equal(whole, values):
        counts = np.bincount(whole)
        uniq = np.flatnonzero(counts)
        rank = np.zeros(len(counts), dtype=np.int64)
        rank[uniq] = np.arange(len(uniq))
        return uniq.astype(np.float64), rank[whole], counts[uniq]
    return np.unique(values, return_inverse=True, return_counts=True)


def colour_indices(agg: np.ndarray, scale: Scale) -> tuple[np.ndarray, ColourBar]:
    """uint8 palette indices (0 = empty, 1..255 the ramp) and the matching colour bar."""
    filled = np.isfinite(agg) & (agg > 0)
    out = np.zeros(agg.shape, dtype=np.uint8)
    values = agg[filled]
    if values.size == 0:
        return out, ColourBar()
    vmin, vmax = float(values.min()), float(values.max())
    ticks = np.linspace(0.0, 1.0, 5)
    if scale == "eq_hist":
        # rank of each value among the filled pixels: every colour used about equally often
        uniq, inverse, counts = _value_histogram(values)
        cdf = np.cumsum(counts, dtype=np.float64)
        t_uniq = (cdf - cdf[0]) / (cdf[-1] - cdf[0]) if len(uniq) > 1 else np.ones(1)
        t = t_uniq[inverse]
        tick_values = np.interp(ticks, t_uniq, uniq) if len(uniq) > 1 else np.full(5, vmax)
    elif scale == "log":
        lo, hi = math.log(vmin), math.log(vmax)
        t = (np.log(values) - lo) / (hi - lo) if hi > lo else np.ones_like(values)
        tick_values = np.exp(lo + ticks * (hi - lo))
    elif scale == "linear":
        t = (values - vmin) / (vmax - vmin) if vmax > vmin else np.ones_like(values)
        tick_values = vmin + ticks * (vmax - vmin)
    else:
        raise ValueError(f"unknown colour scale {scale!r}: expected one of {SCALES}")
    out[filled] = 1 + np.round(np.clip(t, 0.0, 1.0) * 254).astype(np.uint8)
    bar = ColourBar(
        fractions=[float(f) for f in ticks],
        values=[float(v) for v in tick_values],
        vmin=vmin,
        vmax=vmax,
    )
    return out, bar


BIG_PNG = 150_000  # bytes: above this, try WebP (noisy views of 5M points)


def encode_png(
    indices: np.ndarray,
    transparent: bool = True,
    compress_level: int = 1,
    palette: np.ndarray = PALETTE,
) -> bytes:
    """A palette PNG of palette indices (index 0 transparent unless told otherwise).

    Only the colours in use go into the palette, packed to 1, 2 or 4 bits a pixel when few
    are: counts in a view are often small integers, and a 4-bit image of the same pixels is
    about a quarter smaller after compression.
    """
    used = np.flatnonzero(np.bincount(indices.ravel(), minlength=256))
    if used[0] != 0:
        used = np.concatenate([[0], used])  # keep index 0 first: the transparent entry
    lut = np.zeros(256, dtype=np.uint8)
    lut[used] = np.arange(len(used), dtype=np.uint8)
    compact = lut[indices]
    bits = next(b for b in (1, 2, 4, 8) if len(used) <= 1 << b)
    img = Image.fromarray(np.ascontiguousarray(compact), mode="P")
    img.putpalette(palette[used].ravel().tolist())
    extra = {"transparency": 0} if transparent else {}

    def save(level: int) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=level, bits=bits, **extra)
        return buf.getvalue()

    # level 1: a fraction of the default's time for a few per cent more bytes
    return save(compress_level)


def rgba_palette(palette: np.ndarray) -> np.ndarray:
    """uint8 [256, 4]: ``palette`` opaque, entry 0 (the empty cell) transparent."""
    out = np.hstack([palette, np.full((len(palette), 1), 255, dtype=np.uint8)])
    out[0, 3] = 0
    return out


def encode_image(indices: np.ndarray, palette: np.ndarray = PALETTE) -> tuple[bytes, str]:
    """(bytes, MIME type) of the smallest fast encoding: PNG, or for a large noisy view (many
    classes per pixel at 10,000 classes) lossless WebP, about a fifth smaller there."""
    png = encode_png(indices, palette=palette)
    if len(png) <= BIG_PNG:
        return png, "image/png"
    rgba = (RGBA_PALETTE if palette is PALETTE else rgba_palette(palette))[indices]
    buf = io.BytesIO()
    # method 1, quality 0: lossless WebP's fast end (~40 ms for 680 x 680 here)
    Image.fromarray(rgba, mode="RGBA").save(buf, format="WEBP", lossless=True, method=1, quality=0)
    webp = buf.getvalue()
    return (webp, "image/webp") if len(webp) < len(png) else (png, "image/png")


def render(
    points: Points,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    scale: Scale = "eq_hist",
    keep_agg: bool = False,
) -> Rendered:
    """PNG of the cells in the visible ranges for a plot area of ``width`` x ``height`` pixels.

    The image is at most that size: one pixel per class along an axis showing fewer classes
    than pixels, see ``Axis``.
    """
    c = points.num_classes
    x = visible_axis(x_range, c, max(int(width), 1))
    y = visible_axis(y_range, c, max(int(height), 1))
    agg = aggregate(points, x, y)
    indices, bar = colour_indices(agg, scale)
    image, mime = encode_image(indices)
    return Rendered(image, x, y, bar, agg if keep_agg else None, mime)


def render_full_resolution(
    points: Points,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    min_size: int = 1000,
    scale: Scale = "eq_hist",
    max_size: int = 4000,
) -> Image.Image:
    """An opaque RGB image of the range with every visible class at least one pixel wide.

    For exports: enlarged with nearest-neighbour (crisp cells) to at least ``min_size`` pixels
    along the longer side, at most ``max_size``.
    """
    c = points.num_classes
    span_x = abs(x_range[1] - x_range[0])
    span_y = abs(y_range[1] - y_range[0])
    big = min(max(math.ceil(max(span_x, span_y)), 1), max_size)
    wx = max(1, round(big * span_x / max(span_x, span_y)))
    wy = max(1, round(big * span_y / max(span_x, span_y)))
    x = visible_axis(x_range, c, wx)
    y = visible_axis(y_range, c, wy)
    indices, _ = colour_indices(aggregate(points, x, y), scale)
    img = Image.fromarray(PALETTE[indices], mode="RGB")
    factor = max(1, math.ceil(min_size / max(img.size)))
    factor = min(factor, max(1, max_size // max(img.size)))
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    return img


def warm_up() -> None:
    """Compile datashader's numba kernels now, so the first real render pays no compile."""
    frame = pd.DataFrame(
        {
            "x": np.array([0.5, 1.5], dtype=np.float32),
            "y": np.array([0.5, 1.5], dtype=np.float32),
            "n": np.array([1.0, 2.0], dtype=np.float32),
        }
    )
    render(Points(frame, 2), (0, 2), (0, 2), 2, 2)
    render(Points(frame, 2), (0, 2), (0, 2), 1, 1)
