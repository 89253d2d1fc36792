"""The data map's figure as a plain Plotly dict: the datashader PNG as a layout image under the
kit's invisible hover grid, on axes that mean something (variability, confidence), with the
regions' boundaries drawn; and one image's history over the epochs."""

from __future__ import annotations

from typing import Any

from dashboard.kit.points import RenderedMap, points_figure
from dashboard.kit.zoom import HoverGrid, message_spec
from epochscope.analysis.training_dynamics import (
    EASY_CONFIDENCE,
    HARD_CONFIDENCE,
    HARD_VARIABILITY,
)

PLOT_W, PLOT_H = 560, 620
MARGIN = {"l": 60, "r": 20, "t": 50, "b": 50}
EASY_FROM, HARD_BELOW = EASY_CONFIDENCE, HARD_CONFIDENCE  # the regions' lines: easy above
LINE = {"color": "rgba(255,255,255,0.45)", "width": 1, "dash": "dot"}


def _axis(rng: tuple[float, float], title: str) -> dict[str, Any]:
    return {"range": list(rng), "title": {"text": title}, "showgrid": False, "zeroline": False}


def _regions() -> list[dict[str, Any]]:
    return [
        {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": EASY_FROM,
         "y1": EASY_FROM, "line": LINE},
        {"type": "line", "xref": "x", "x0": 0, "x1": HARD_VARIABILITY, "yref": "y",
         "y0": HARD_BELOW, "y1": HARD_BELOW, "line": LINE},
        {"type": "line", "xref": "x", "x0": HARD_VARIABILITY, "x1": HARD_VARIABILITY,
         "yref": "y", "y0": 0, "y1": HARD_BELOW, "line": LINE},
    ]  # fmt: skip


def map_spec(
    rendered: RenderedMap, title: str, size: tuple[int, int] = (PLOT_W, PLOT_H)
) -> tuple[dict[str, Any], HoverGrid]:
    """The figure of a rendered visible range, with the regions' boundaries drawn."""
    axes = (
        _axis(rendered.x, "variability (std of the label's probability over epochs)"),
        _axis(rendered.y, "confidence (mean probability of the given label)"),
    )
    fig, grid = points_figure(rendered, title, size, MARGIN, axes, "data-map-cells")
    fig["layout"]["shapes"] = _regions()
    return fig, grid


def waiting_spec(message: str, size: tuple[int, int] = (PLOT_W, PLOT_H)) -> dict[str, Any]:
    """An empty map saying why it is empty (no training statistics)."""
    return message_spec(message, size, MARGIN, wrap=70)


def history_figure(history: dict[str, list], title: str) -> dict[str, Any]:
    """An image's probability of its given label per epoch (markers: right or wrong that
    epoch) and its margin on a second axis; an epoch that did not see it has a gap."""
    epochs, p, margin = history["epoch"], history["p_label"], history["margin"]
    right = ["#1a9850" if c else "#d7301f" for c in history["correct"]]
    return {
        "data": [
            {"type": "scatter", "x": epochs, "y": p, "name": "p(given label)", "meta": "p_label",
             "mode": "lines+markers", "marker": {"color": right, "size": 8},
             "line": {"color": "#4e79a7"}},
            {"type": "scatter", "x": epochs, "y": margin, "name": "margin", "meta": "margin",
             "yaxis": "y2", "mode": "lines", "line": {"color": "#f28e2b", "dash": "dot"}},
        ],
        "layout": {
            "title": {"text": title, "font": {"size": 12}},
            "height": 260,
            "margin": {"l": 50, "r": 50, "t": 40, "b": 40},
            "xaxis": {"title": {"text": "epoch"}, "dtick": 1},
            "yaxis": {"title": {"text": "p(given label)"}, "range": [0, 1]},
            "yaxis2": {"title": {"text": "margin"}, "overlaying": "y", "side": "right"},
            "legend": {"orientation": "h", "y": -0.3},
        },
    }  # fmt: skip
