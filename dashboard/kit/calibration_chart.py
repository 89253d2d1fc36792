"""ECE over epochs, before and after temperature scaling: the training page's calibration
chart, and the colours the reliability diagram shares with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

BEFORE, AFTER = "#d62728", "#1f77b4"


def ece_figure(series: dict[str, Sequence[Any]], title: str) -> go.Figure:
    """ECE over epochs (``labels.ece_series``): before and after temperature scaling, the
    fitted temperature on a second axis."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = list(series["epoch"])
    for key, name, colour in (("ece", "ECE", BEFORE), ("ece_scaled", "ECE after scaling", AFTER)):
        fig.add_trace(
            go.Scatter(x=x, y=list(series[key]), name=name, mode="lines+markers", meta=key,
                       line={"color": colour}, hovertemplate="epoch %{x}: %{y:.2%}<extra></extra>"),
            secondary_y=False,
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=x, y=list(series["temperature"]), name="temperature", mode="lines+markers",
                   meta="temperature", line={"color": "#7f7f7f", "dash": "dash"},
                   hovertemplate="epoch %{x}: T = %{y:.3f}<extra></extra>"),
        secondary_y=True,
    )  # fmt: skip
    fig.update_layout(title=title, height=320, margin={"l": 60, "r": 60, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})  # fmt: skip
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="ECE", tickformat=".0%", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="temperature", rangemode="tozero", secondary_y=True)
    return fig
