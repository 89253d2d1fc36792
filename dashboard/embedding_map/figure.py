"""The map figure as a plain Plotly dict: the datashader PNG as a layout image under an
invisible hover grid (Plotly sends hover and click events for a heatmap, never for an image)."""

from __future__ import annotations

import textwrap
from typing import Any

from dashboard.embedding_map.extent import EXTENT, Range
from dashboard.kit.points import RenderedMap, image_layer
from dashboard.kit.zoom import BACKGROUND, HOVER_CELLS, HoverGrid, hover_trace

PLOT_W, PLOT_H = 760, 620
MARGIN = {"l": 20, "r": 20, "t": 50, "b": 20}


def hover_grid(x: Range, y: Range, size: tuple[int, int]) -> HoverGrid:
    w, h = size
    nx = max(1, round(HOVER_CELLS * w / max(w, h)))
    ny = max(1, round(HOVER_CELLS * h / max(w, h)))
    return HoverGrid(x[0], y[0], (x[1] - x[0]) / nx, (y[1] - y[0]) / ny, nx, ny)


def _axis(rng: Range) -> dict[str, Any]:
    return {
        "range": list(rng),
        "showgrid": False,
        "zeroline": False,
        "showticklabels": False,
        "ticks": "",
    }


def map_spec(
    rendered: RenderedMap, title: str, size: tuple[int, int] = (PLOT_W, PLOT_H)
) -> tuple[dict[str, Any], HoverGrid]:
    """The figure of a rendered visible range (a dict: validating through go.Figure costs more
    than the render; tests validate it once)."""
    w, h = size
    grid = hover_grid(rendered.x, rendered.y, size)
    hover = hover_trace(grid, "map-cells")
    layout = {
        "width": w + MARGIN["l"] + MARGIN["r"],
        "height": h + MARGIN["t"] + MARGIN["b"],
        "margin": MARGIN,
        "autosize": False,
        "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 13}},
        "plot_bgcolor": BACKGROUND,
        "paper_bgcolor": "white",
        "xaxis": _axis(rendered.x),
        "yaxis": _axis(rendered.y),
        "images": [image_layer(rendered)],
        "dragmode": "zoom",
        "hovermode": "closest",
        "meta": {"drawn": rendered.drawn, "pixels": [rendered.width, rendered.height]},
    }
    return {"data": [hover], "layout": layout}, grid


def waiting_spec(message: str, size: tuple[int, int] = (PLOT_W, PLOT_H)) -> dict[str, Any]:
    """An empty map saying why it is empty (no embeddings, being computed, failed)."""
    w, h = size
    return {
        "data": [],
        "layout": {
            "width": w + MARGIN["l"] + MARGIN["r"],
            "height": h + MARGIN["t"] + MARGIN["b"],
            "margin": MARGIN,
            "xaxis": _axis(EXTENT),
            "yaxis": _axis(EXTENT),
            "plot_bgcolor": "#f4f4f4",
            "annotations": [
                {
                    "text": "<br>".join(textwrap.wrap(message, 90)),
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
