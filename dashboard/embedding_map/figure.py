"""The map figure as a plain Plotly dict: the datashader PNG as a layout image under an
invisible hover grid (Plotly sends hover and click events for a heatmap, never for an image)."""

from __future__ import annotations

from typing import Any

from dashboard.embedding_map.extent import Range
from dashboard.kit.points import RenderedMap, image_layer
from dashboard.kit.zoom import BACKGROUND, HoverGrid, hover_trace, message_spec, points_grid

PLOT_W, PLOT_H = 760, 620
MARGIN = {"l": 20, "r": 20, "t": 50, "b": 20}


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
    grid = points_grid(rendered.x, rendered.y, size)
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
    return message_spec(message, size, MARGIN, wrap=90)
