"""The map figure: the kit's figure of many points (dashboard/kit/points.py) on axes without
ticks, and the figure of a map not drawn yet."""

from __future__ import annotations

from typing import Any

from dashboard.embedding_map.extent import Range
from dashboard.kit.points import RenderedMap, points_figure
from dashboard.kit.zoom import HoverGrid, message_spec

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
    """The figure of a rendered visible range (axes without ticks: a layout's coordinates
    mean nothing on their own)."""
    axes = (_axis(rendered.x), _axis(rendered.y))
    return points_figure(rendered, title, size, MARGIN, axes, "map-cells")


def waiting_spec(message: str, size: tuple[int, int] = (PLOT_W, PLOT_H)) -> dict[str, Any]:
    """An empty map saying why it is empty (no embeddings, being computed, failed)."""
    return message_spec(message, size, MARGIN, wrap=90)
