"""The zoomable datashader image view both the confusion explorer and the map are drawn with:
the visible range a zoom or pan asks for (relayout parsing, clamping), the invisible hover grid
over the image (Plotly sends hover and click events for a heatmap, never for a layout image),
and the graph's look. Each view renders its own image for the range; this is the rest."""

from __future__ import annotations

import base64
import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Range = tuple[float, float]

#: dcc.Graph's config for a zoomable image view
GRAPH_CONFIG = {
    "displaylogo": False,
    "scrollZoom": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toImage"],
}
#: the plot's background behind the image: the colour of an empty cell or pixel
BACKGROUND = "#0b120e"
#: at most this many hover cells along an axis (~10-13 KB of base64 uint8 zeros)
HOVER_CELLS = 100


def clamp(rng: Range, extent: Range, min_span: float) -> Range:
    """Ordered, at least ``min_span`` wide (and no wider than ``extent``), moved (not shrunk)
    back inside ``extent``."""
    lo, hi = sorted(float(v) for v in rng)
    full = extent[1] - extent[0]
    span = min(max(hi - lo, min(min_span, full)), full)
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2, mid + span / 2
    if lo < extent[0]:
        lo, hi = extent[0], extent[0] + span
    if hi > extent[1]:
        lo, hi = extent[1] - span, extent[1]
    return lo, hi


def relayout_axis(relayout: Mapping[str, Any], axis: str) -> Range | Literal["auto"] | None:
    """(lo, hi) when a relayout event sets ``axis``' range, "auto" for autorange, else None."""
    if relayout.get(f"{axis}.autorange"):
        return "auto"
    rng = relayout.get(f"{axis}.range")
    if isinstance(rng, list | tuple) and len(rng) == 2:
        lo, hi = rng
    else:
        lo, hi = relayout.get(f"{axis}.range[0]"), relayout.get(f"{axis}.range[1]")
    if all(isinstance(v, int | float) and math.isfinite(v) for v in (lo, hi)):
        return float(lo), float(hi)
    return None


def moves_axes(relayout: Mapping[str, Any] | None) -> bool:
    """Whether a relayout event zooms or pans (autosize and the rest move nothing)."""
    return any(k.startswith(("xaxis", "yaxis")) for k in relayout or {})


def next_ranges(
    relayout: Mapping[str, Any] | None,
    previous: Mapping[str, Any] | None,
    context: list[Any],
    full: tuple[Range, Range],
    fit: Callable[[Range], Range],
) -> tuple[Range, Range]:
    """The ranges to render: the previous view's while ``context`` (what the coordinates mean:
    run, order, ...) is the same, else ``full``; a relayout event moves the axes it names
    (autorange: the whole axis); each range passed through ``fit``."""
    fx, fy = full
    if not previous or previous.get("context") != context:
        return fit(fx), fit(fy)
    x = tuple(previous.get("x", fx))
    y = tuple(previous.get("y", fy))
    for axis, whole in (("xaxis", fx), ("yaxis", fy)):
        got = relayout_axis(relayout, axis) if relayout else None
        if got is None:
            continue
        if axis == "xaxis":
            x = whole if got == "auto" else got
        else:
            y = whole if got == "auto" else got
    return fit(x), fit(y)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HoverGrid:
    """Invisible hover cells over the visible range: ``nx`` x ``ny`` cells of ``dx`` x ``dy``
    from (x0, y0), their lower corner (whole classes per cell in the matrix)."""

    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int

    def cell(self, x: float, y: float) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The ranges [lo, hi) (x, then y) of the hover cell whose centre is (x, y).

        None when (x, y) is not one of this grid's centres: an event from an older figure
        (a click racing a zoom) must not be read with a newer grid.
        """
        fx = (x - self.x0) / self.dx - 0.5
        fy = (y - self.y0) / self.dy - 0.5
        ix, iy = round(fx), round(fy)
        if abs(fx - ix) > 1e-6 or abs(fy - iy) > 1e-6:
            return None
        if not (0 <= ix < self.nx and 0 <= iy < self.ny):
            return None
        x0 = self.x0 + ix * self.dx
        y0 = self.y0 + iy * self.dy
        return (x0, x0 + self.dx), (y0, y0 + self.dy)

    @property
    def radius(self) -> float:
        """How far from a cell's centre a point of that cell may lie: the half-diagonal."""
        return 0.5 * float(np.hypot(self.dx, self.dy))

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def hover_trace(grid: HoverGrid, name: str) -> dict[str, Any]:
    """The transparent heatmap of ``grid``: one cell per hover cell, z as a typed array (~4x
    smaller than a list)."""
    zeros = np.zeros(grid.ny * grid.nx, dtype=np.uint8)
    return {
        "type": "heatmap",
        "name": name,
        "z": {
            "dtype": "u1",
            "bdata": base64.b64encode(zeros.tobytes()).decode("ascii"),
            "shape": f"{grid.ny}, {grid.nx}",
        },
        "x0": grid.x0 + grid.dx / 2,
        "dx": grid.dx,
        "y0": grid.y0 + grid.dy / 2,
        "dy": grid.dy,
        "opacity": 0,
        "showscale": False,
        "hoverinfo": "none",
        "colorscale": [[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
    }


def points_grid(x: Range, y: Range, size: tuple[int, int]) -> HoverGrid:
    """The hover grid of a map of points ``size`` (w, h) pixels over ranges ``x`` and ``y``:
    at most HOVER_CELLS cells along its longer side, square in pixels."""
    w, h = size
    nx = max(1, round(HOVER_CELLS * w / max(w, h)))
    ny = max(1, round(HOVER_CELLS * h / max(w, h)))
    return HoverGrid(x[0], y[0], (x[1] - x[0]) / nx, (y[1] - y[0]) / ny, nx, ny)


def message_spec(
    message: str, size: tuple[int, int], margin: Mapping[str, int], wrap: int = 90
) -> dict[str, Any]:
    """An empty view of ``size`` plot pixels saying why it is empty (nothing recorded, being
    computed, failed), as a plain Plotly dict."""
    w, h = size
    return {
        "data": [],
        "layout": {
            "width": w + margin["l"] + margin["r"],
            "height": h + margin["t"] + margin["b"],
            "margin": dict(margin),
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "plot_bgcolor": "#f4f4f4",
            "annotations": [
                {
                    "text": "<br>".join(textwrap.wrap(message, wrap)),
                    "x": 0.5,
                    "y": 0.5,
                    "xref": "paper",
                    "yref": "paper",
                    "showarrow": False,
                    "font": {"size": 13},
                    "width": w - 40,
                }
            ],
        },
    }
