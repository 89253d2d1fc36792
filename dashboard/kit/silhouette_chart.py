"""The band silhouette over epochs (training page, beside relatedness): how far apart the
network holds the families of classes in its own representation."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go


def silhouette_figure(
    epochs: Sequence[int], values: Sequence[float | None], groups: str = "bands", title: str = ""
) -> go.Figure:
    """One line: the silhouette of the ``groups`` (bands, or classes) by epoch; 0 means they
    overlap, 1 that each is a tight cluster far from the others."""
    fig = go.Figure(
        go.Scatter(
            x=list(epochs),
            y=[None if v is None else float(v) for v in values],
            mode="lines+markers",
            name=f"silhouette of the {groups}",
            line={"color": "#1b7837", "width": 3},
            hovertemplate="epoch %{x}: %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title={
            "text": title or f"Do the {groups} separate in the network's embedding space?",
            "font": {"size": 13},
        },
        xaxis={"title": "epoch", "dtick": 1 if len(epochs) <= 15 else None},
        yaxis={"title": f"silhouette of the {groups} (cosine)", "rangemode": "tozero"},
        height=320,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        template="plotly_white",
        uirevision="silhouette",
    )
    return fig
