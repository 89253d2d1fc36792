"""Render the visible part of a map of many points (the embedding map, the data map) to a PNG
with datashader: every point drawn.

Each pixel shows how many images fall in it (brighter: more) in the colour of one of them.
Which one is chosen by a fixed random rank per image (datashader's ``max`` of the rank), so a
band drawn last does not hide the others where they overlap, and a zoom shows the same colours.
Where the view holds few points for its pixels (a run of 1,000 validation images, or a deep zoom)
each point is drawn as a small disc instead of one pixel (:func:`spread_radius`), as datashader's
dynspread does, so that a sparse map is not a field of single dots.
Coordinates are the view's own (y up); each view sets its extent and its nearest-point search.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import datashader as ds
import numpy as np
import pandas as pd
from PIL import Image

from dashboard.kit import zoom

Range = zoom.Range
_RANK_SEED = 0
MAX_SPREAD = 3  # pixels around a point, at most (a 7-pixel disc)
_SPREAD_PER = 7.0  # a point's radius grows by a pixel per this much spacing (pixels) between points


@dataclass(frozen=True, eq=False)
class MapPoints:
    """Points ready for datashader, and a KD-tree for 'which image is here' when asked for."""

    frame: pd.DataFrame  # x, y float32; r: a fixed random rank per image (float32)
    by_rank: np.ndarray  # int64 [N]: the image of each rank
    tree: object  # scipy.spatial.cKDTree over (x, y), or None

    @property
    def nbytes(self) -> int:
        n = len(self.by_rank)
        tree = 40 * n if self.tree is not None else 0
        return int(self.frame.memory_usage(index=False).sum()) + self.by_rank.nbytes + tree

    def __len__(self) -> int:
        return len(self.by_rank)


def map_points(coords: np.ndarray, tree: bool = True) -> MapPoints:
    """MapPoints of coordinates float32 [N, 2] (NaN: a point not drawn); ``tree``: build the
    KD-tree (a view that finds the nearest point by brute force goes without)."""
    xy = np.asarray(coords, dtype=np.float32)
    n = len(xy)
    rank = np.random.default_rng(_RANK_SEED).permutation(n)
    by_rank = np.empty(n, dtype=np.int64)
    by_rank[rank] = np.arange(n)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "r": rank.astype(np.float32)})
    if not tree:
        return MapPoints(frame, by_rank, None)
    from scipy.spatial import cKDTree

    return MapPoints(frame, by_rank, cKDTree(xy.astype(np.float64)))


@dataclass(frozen=True)
class RenderedMap:
    image: bytes  # PNG (RGBA)
    x: Range
    y: Range
    width: int
    height: int
    drawn: int  # images inside the visible range (each counted in some pixel)

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.image).decode("ascii")


def aggregate(points: MapPoints, x: Range, y: Range, width: int, height: int):
    """(count int [h, w], winning rank float [h, w], NaN where empty); row 0 is the bottom."""
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x, y_range=y)
    count = canvas.points(points.frame, "x", "y", agg=ds.count())
    rank = canvas.points(points.frame, "x", "y", agg=ds.max("r"))
    return np.asarray(count.data), np.asarray(rank.data)


def spread_radius(drawn: int, width: int, height: int) -> int:
    """Pixels to draw around each point: 0 for a dense view (50,000 points in the map's
    760 x 620 pixels), up to MAX_SPREAD as the mean spacing between points grows."""
    if drawn <= 0:
        return 0
    spacing = math.sqrt(width * height / drawn)
    return min(MAX_SPREAD, int(spacing / _SPREAD_PER))


def _spread(count: np.ndarray, rank: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Each filled pixel's rank and count carried to the pixels within ``radius``; where discs
    overlap the higher rank wins (the same choice as between points in one pixel). Only the
    filled pixels are visited: a view is spread only when it holds few points."""
    h, w = count.shape
    ys, xs = np.nonzero(count > 0)
    r = np.arange(-radius, radius + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(r, r, indexing="ij"))
    disc = dx * dx + dy * dy <= radius * radius + radius  # a disc, not a square
    ty = (ys[:, None] + dy[disc][None, :]).ravel()
    tx = (xs[:, None] + dx[disc][None, :]).ravel()
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    target = ty[inside] * w + tx[inside]
    per_pixel = int(disc.sum())
    spread_rank = np.full(h * w, -1.0)
    spread_count = np.zeros(h * w, dtype=count.dtype)
    np.maximum.at(spread_rank, target, np.repeat(rank[ys, xs], per_pixel)[inside])
    np.maximum.at(spread_count, target, np.repeat(count[ys, xs], per_pixel)[inside])
    return spread_count.reshape(h, w), spread_rank.reshape(h, w)


def render_map(
    points: MapPoints,
    colours: np.ndarray,
    x: Range,
    y: Range,
    width: int,
    height: int,
    spread: int | None = None,
) -> RenderedMap:
    """PNG of the points in the visible ranges, ``width`` x ``height`` pixels; ``colours``
    uint8 [N, 3] is each image's colour (its band's or its class's). Each point is a disc of
    ``spread`` pixels' radius (default: :func:`spread_radius` of the points in view)."""
    width, height = max(int(width), 1), max(int(height), 1)
    count, rank = aggregate(points, x, y, width, height)
    drawn = int(count.sum())
    radius = spread_radius(drawn, width, height) if spread is None else max(int(spread), 0)
    if radius:
        count, rank = _spread(count, rank, radius)
    filled = count > 0
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    if filled.any():
        winners = points.by_rank[rank[filled].astype(np.int64)]
        rgba[filled, :3] = colours[winners]
        # alpha from the count on a log scale: one image is visible, a crowd is solid
        top = math.log1p(float(count.max()))
        alpha = 0.45 + 0.55 * np.log1p(count[filled].astype(np.float64)) / max(top, 1e-9)
        rgba[filled, 3] = np.round(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
    buf = io.BytesIO()
    # rows flipped: datashader's row 0 is the lowest y, an image's row 0 its top
    Image.fromarray(rgba[::-1], mode="RGBA").save(buf, format="PNG", compress_level=1)
    return RenderedMap(buf.getvalue(), x, y, width, height, drawn)


def image_layer(rendered: RenderedMap) -> dict[str, Any]:
    """The rendered PNG as a Plotly layout image filling its visible range."""
    return {
        "source": rendered.data_uri(),
        "xref": "x",
        "yref": "y",
        "x": rendered.x[0],
        "y": rendered.y[1],
        "sizex": rendered.x[1] - rendered.x[0],
        "sizey": rendered.y[1] - rendered.y[0],
        "xanchor": "left",
        "yanchor": "top",
        "sizing": "stretch",
        "layer": "below",
    }


def points_figure(
    rendered: RenderedMap,
    title: str,
    size: tuple[int, int],
    margin: dict[str, int],
    axes: tuple[dict[str, Any], dict[str, Any]],
    hover_name: str,
) -> tuple[dict[str, Any], zoom.HoverGrid]:
    """The figure of a rendered visible range as a plain Plotly dict (validating it through
    go.Figure costs more than the render; tests validate it once): the PNG as a layout image
    under the kit's invisible hover grid (Plotly sends hover and click events for a heatmap,
    never for an image), ``axes`` (x, y) as the view wants them; and that grid."""
    w, h = size
    grid = zoom.points_grid(rendered.x, rendered.y, size)
    layout = {
        "width": w + margin["l"] + margin["r"],
        "height": h + margin["t"] + margin["b"],
        "margin": margin,
        "autosize": False,
        "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 13}},
        "plot_bgcolor": zoom.BACKGROUND,
        "paper_bgcolor": "white",
        "xaxis": axes[0],
        "yaxis": axes[1],
        "images": [image_layer(rendered)],
        "dragmode": "zoom",
        "hovermode": "closest",
        "meta": {"drawn": rendered.drawn, "pixels": [rendered.width, rendered.height]},
    }
    return {"data": [zoom.hover_trace(grid, hover_name)], "layout": layout}, grid


def warm_up() -> None:
    """Compile datashader's numba kernels for these reductions now, not on a first view."""
    pts = map_points(np.array([[0.0, 0.0], [0.5, 0.5]], dtype=np.float32), tree=False)
    render_map(pts, np.zeros((2, 3), dtype=np.uint8), (0.0, 1.0), (0.0, 1.0), 2, 2)
