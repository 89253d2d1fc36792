"""The matrix figure: a datashader PNG as a layout image, band strips, colour bar, hover grid."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dashboard.kit.bands import band_colour
from dashboard.kit.zoom import BACKGROUND, HOVER_CELLS, HoverGrid, hover_trace
from epochscope.analysis.bands import visible_runs
from epochscope.catalogue import Band

from .render import PLOTLY_COLORSCALE, Rendered

# The server renders for the plot area's exact pixel size: PLOT_PX square until the page has
# measured its viewport (``plot_size``), then whatever fills it.
PLOT_PX = 680
MIN_PLOT_PX, MAX_PLOT_PX = 320, 2400
MARGIN = {"l": 170, "r": 110, "t": 120, "b": 40}
FIG_WIDTH = PLOT_PX + MARGIN["l"] + MARGIN["r"]
FIG_HEIGHT = PLOT_PX + MARGIN["t"] + MARGIN["b"]
# what else the page puts beside and above the figure (px): the side panel, the page's padding,
# and the header plus the control rows (measured in Chromium)
SIDE_PX = 380
PAGE_PAD_PX = 48
CHROME_TOP_PX = 200
HIGHLIGHT = "rgba(255, 255, 255, 0.9)"
STRIP_PX = 14  # thickness of a band strip
GAP_PX = 3


def hover_grid(x_range: Sequence[float], y_range: Sequence[float], num_classes: int) -> HoverGrid:
    """Whole-class hover cells covering the visible range, grouped when there are many."""

    def axis(rng: Sequence[float]) -> tuple[int, int, int]:
        lo, hi = sorted(rng)
        first = max(0, math.floor(lo))
        last = min(num_classes, math.ceil(hi))
        last = max(last, first + 1)
        group = max(1, math.ceil((last - first) / HOVER_CELLS))
        return first, group, math.ceil((last - first) / group)

    xs, xg, nx = axis(x_range)
    ys, yg, ny = axis(y_range)
    return HoverGrid(xs, ys, xg, yg, nx, ny)  # whole classes: every field an int


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def plot_size(viewport_w: int, viewport_h: int, share: float = 1.0) -> tuple[int, int]:
    """(width, height) in px of the plot area that fills a browser viewport.

    ``share``: the part of the width the matrix column gets (the per-class page gives half to
    its table). Not square: the rows use the height, the columns the width.
    """
    w = int(viewport_w * share) - MARGIN["l"] - MARGIN["r"] - PAGE_PAD_PX
    if share >= 1.0:
        w -= SIDE_PX
    h = int(viewport_h) - CHROME_TOP_PX - MARGIN["t"] - MARGIN["b"]
    clamp = lambda v: max(MIN_PLOT_PX, min(MAX_PLOT_PX, v))  # noqa: E731
    if share < 1.0:  # beside a table: a square as wide as its column allows
        return clamp(min(w, h)), clamp(min(w, h))
    return clamp(w), clamp(h)


def band_pixels(bands: Sequence[Band], lo: float, hi: float, pixels: int = PLOT_PX) -> np.ndarray:
    """uint8 [pixels, 4]: the RGBA band colour under each pixel of an axis showing [lo, hi)."""
    slots = lo + (np.arange(pixels) + 0.5) * (hi - lo) / pixels
    rgba = np.zeros((pixels, 4), dtype=np.uint8)
    for b in visible_runs(bands, lo, hi):
        rgba[(slots >= b.start) & (slots < b.stop)] = (*_hex_rgb(band_colour(b.name)), 255)
    return rgba


def _png_uri(rgba: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def class_ticks(
    slot_names: Sequence[str],
    lo: float,
    hi: float,
    min_px: float,
    pixels: int = PLOT_PX,
    bands: Sequence[Band] = (),
) -> dict[str, Any] | None:
    """Axis tick labels naming each visible class, when every slot is at least ``min_px`` on
    screen (a 10-class run, or a zoom into a large one); None when they would not be legible,
    and for the whole matrix of a run with bands (whose axes name its bands, as the seed's)."""
    first, last = max(math.floor(min(lo, hi)), 0), min(math.ceil(max(lo, hi)), len(slot_names))
    if last <= first or pixels / max(abs(hi - lo), 1e-9) < min_px:
        return None
    if bands and first == 0 and last == len(slot_names):
        return None
    slots = range(first, last)
    return {
        "tickmode": "array",
        "tickvals": [s + 0.5 for s in slots],
        "ticktext": [_short(slot_names[s]) for s in slots],
        "showticklabels": True,
        "ticks": "outside",
        "ticklen": STRIP_PX + 2 * GAP_PX,
        "tickcolor": "rgba(0,0,0,0)",
        "tickfont": {"size": 10},
    }


def _short(name: str, most: int = 24) -> str:
    return name if len(name) <= most else name[: most - 1] + "…"


def band_ticks(
    bands: Sequence[Band], lo: float, hi: float, min_px: float, pixels: int = PLOT_PX
) -> dict[str, Any]:
    """Axis tick labels naming the bands at least ``min_px`` wide on screen, at their centres.

    Tick labels, not annotations: Plotly lays out one axis' labels in a batch, much faster.
    Invisible ticks ``STRIP_PX + 2 * GAP_PX`` long push the labels past the strip.
    """
    px_per_slot = pixels / max(hi - lo, 1e-9)
    shown = [b for b in visible_runs(bands, lo, hi) if (b.stop - b.start) * px_per_slot >= min_px]
    return {
        "tickmode": "array",
        "tickvals": [(b.start + b.stop) / 2 for b in shown],
        "ticktext": [b.name for b in shown],
        "showticklabels": bool(shown),
        "ticks": "outside" if shown else "",
        "ticklen": STRIP_PX + 2 * GAP_PX,
        "tickcolor": "rgba(0,0,0,0)",
        "tickfont": {"size": 10},
    }


def _strips(
    bands: Sequence[Band], x: tuple[float, float], y: tuple[float, float], w: int, h: int
) -> list[dict]:
    """The band strips as layout images: a row above the matrix (predicted class), a column
    left of it (true class).

    Images, not a rectangle shape per band: Plotly redraws ~70 shapes with their labels in
    ~100 ms on every zoom, two images in next to nothing. Drawn at the plot's pixel size for
    the exact visible range, so they line up with the matrix and never overhang it.
    """
    near_x, thick_x = GAP_PX / w, STRIP_PX / w
    near_y, thick_y = GAP_PX / h, STRIP_PX / h
    common = {"xref": "paper", "yref": "paper", "sizing": "stretch", "layer": "above"}
    top = {
        **common,
        "source": _png_uri(band_pixels(bands, *x, w)[None, :, :]),
        "x": 0,
        "y": 1 + near_y,
        "sizex": 1,
        "sizey": thick_y,
        "xanchor": "left",
        "yanchor": "bottom",
    }
    left = {
        **common,
        "source": _png_uri(band_pixels(bands, *y, h)[:, None, :]),
        "x": -near_x,
        "y": 1,
        "sizex": thick_x,
        "sizey": 1,
        "xanchor": "right",
        "yanchor": "top",
    }
    return [top, left]


def matrix_spec(
    rendered: Rendered,
    num_classes: int,
    x_range: Sequence[float],
    y_range: Sequence[float],
    bands: Sequence[Band] = (),
    title: str = "",
    size: tuple[int, int] = (PLOT_PX, PLOT_PX),
    colour: ColourKey | None = None,
    highlight: float | None = None,
    slot_names: Sequence[str] = (),
) -> tuple[dict[str, Any], HoverGrid]:
    """The figure for a rendered view as a plain Plotly dict; axes are display slots, y grows
    downwards.

    ``x_range``/``y_range`` are the visible ranges (any orientation); the image covers at least
    them and the subplot clips what lies outside. A dict, because validating ~100 shapes and
    annotations through go.Figure costs ~100 ms per zoom; tests validate it once instead.
    """
    x0, x1 = sorted(float(v) for v in x_range)
    y0, y1 = sorted(float(v) for v in y_range)
    grid = hover_grid((x0, x1), (y0, y1), num_classes)
    # one transparent heatmap cell per class (or group of classes)
    hover = hover_trace(grid, "cells")
    bar = rendered.colourbar
    colour = colour or ColourKey()
    w, h = size
    # the colour bar: a single invisible marker carrying the colour scale
    scale = {
        "type": "scatter",
        "name": "scale",
        "x": [x0],
        "y": [y0],
        "mode": "markers",
        "hoverinfo": "skip",
        "showlegend": False,
        "marker": {
            "size": 1,
            "opacity": 0,
            "color": [0.0],
            "cmin": 0.0,
            "cmax": 1.0,
            "colorscale": colour.scale,
            "showscale": bool(bar.values),
            "colorbar": {
                "title": {"text": colour.title},
                "tickvals": bar.fractions,
                "ticktext": [colour.label(v) for v in bar.values],
                "thickness": 14,
                "len": 0.8,
            },
        },
    }
    layout = {
        "width": w + MARGIN["l"] + MARGIN["r"],
        "height": h + MARGIN["t"] + MARGIN["b"],
        "margin": MARGIN,
        "autosize": False,
        "title": {
            "text": title,
            "x": 0.0,
            "xanchor": "left",
            "y": 0.995,
            "yanchor": "top",
            "font": {"size": 13},
        },
        "plot_bgcolor": BACKGROUND,
        "paper_bgcolor": "white",
        # band names as tick labels: predicted-class bands on top, true-class bands on the left
        "xaxis": {
            "range": [x0, x1],
            "showgrid": False,
            "zeroline": False,
            "side": "top",
            "tickangle": -45,
            **(
                class_ticks(slot_names, x0, x1, min_px=14, pixels=w, bands=bands)
                or band_ticks(bands, x0, x1, min_px=12, pixels=w)
            ),
        },
        "yaxis": {
            "range": [y1, y0],
            "showgrid": False,
            "zeroline": False,
            **(
                class_ticks(slot_names, y0, y1, min_px=12, pixels=h, bands=bands)
                or band_ticks(bands, y0, y1, min_px=11, pixels=h)
            ),
        },
        "images": [
            {
                "source": rendered.data_uri(),
                "xref": "x",
                "yref": "y",
                "x": rendered.x.lo,
                "y": rendered.y.lo,
                "sizex": rendered.x.hi - rendered.x.lo,
                "sizey": rendered.y.hi - rendered.y.lo,
                "xanchor": "left",
                "yanchor": "top",
                "sizing": "stretch",
                "layer": "below",
            },
            *(_strips(bands, (x0, x1), (y0, y1), w, h) if bands else []),
        ],
        "shapes": highlight_shapes(highlight, (x0, x1), (y0, y1)),
        "dragmode": "zoom",
        "hovermode": "closest",
    }
    return {"data": [hover, scale], "layout": layout}, grid


def highlight_shapes(
    slot: float | None, x: tuple[float, float], y: tuple[float, float]
) -> list[dict[str, Any]]:
    """Outlines of a selected class's row and column (slot ``slot``) across the visible range;
    at least 2 px wide on screen however many classes share a pixel."""
    if slot is None:
        return []
    line = {"color": HIGHLIGHT, "width": 1.5}
    common = {"type": "rect", "xref": "x", "yref": "y", "line": line, "layer": "above"}
    return [
        {**common, "name": "row", "x0": x[0], "x1": x[1], "y0": slot, "y1": slot + 1},
        {**common, "name": "column", "x0": slot, "x1": slot + 1, "y0": y[0], "y1": y[1]},
    ]


@dataclass(frozen=True)
class ColourKey:
    """What the colour bar says: its title, colour scale and how a tick value reads."""

    title: str = "count"
    scale: Sequence[Sequence[Any]] = tuple(PLOTLY_COLORSCALE)
    kind: str = "count"  # "count", "share" or "delta"

    def label(self, v: float) -> str:
        if self.kind == "share":
            return f"{100 * v:.3g}%"
        if self.kind == "delta":
            pt = 100 * v
            return "0" if not v else f"{pt:+.0f} pt" if abs(pt) >= 10 else f"{pt:+.1f} pt"
        return _count_label(v)


def _count_label(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.1f}"
