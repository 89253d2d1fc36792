"""The relatedness chart: shares of related wrong guesses and mean distance, by epoch."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from epochscope.analysis.relatedness import Relatedness


def relatedness_figure(
    epochs: Sequence[int], values: Sequence[Relatedness], title: str | None = None
) -> go.Figure:
    """Shares of related wrong guesses (left axis) and mean WordNet distance (right) by epoch.

    Dotted lines are the chance levels of uniformly random mistakes; lines rising above them
    mean the model's mistakes stay within the right family.
    """
    fig = go.Figure()
    epochs = list(epochs)
    source = values[-1].source if values else "WordNet"
    series = [
        ("same_band", "in the true class's band", "#2ca02c", "y"),
        ("same_parent", f"sharing a {source} parent", "#1f77b4", "y"),
        ("mean_distance", f"mean {source} distance", "#d62728", "y2"),
    ]
    for attr, label, colour, axis in series:
        ys = [getattr(v, attr) for v in values]
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=ys,
                name=label,
                mode="lines+markers",
                yaxis=axis,
                line={"color": colour},
                hovertemplate=("epoch %{x}: %{y:.1%}" if axis == "y" else "epoch %{x}: %{y:.2f}")
                + "<extra>"
                + label
                + "</extra>",
            )
        )
        chance = [getattr(v, "chance_" + attr.replace("mean_", "")) for v in values]
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=chance,
                name=f"chance: {label}",
                mode="lines",
                yaxis=axis,
                line={"color": colour, "dash": "dot", "width": 1},
                showlegend=False,
                hovertemplate="chance %{y:.3g}<extra></extra>",
            )
        )
    by_band = values[-1].by_band if values else ()
    if by_band:
        # the latest epoch by band: which families keep their mistakes inside
        fig.add_trace(
            go.Bar(
                x=[share for _, _, share in by_band],
                y=[band for band, _, _ in by_band],
                orientation="h",
                name=f"by band, epoch {epochs[-1]}",
                xaxis="x3",
                yaxis="y3",
                marker={"color": "#2ca02c"},
                customdata=[n for _, n, _ in by_band],
                hovertemplate="%{y}: %{x:.1%} of %{customdata} wrong guesses in the band"
                "<extra></extra>",
                showlegend=False,
            )
        )
    fig.update_layout(
        title=title or "Are the mistakes related to the true class? (wrong top-5 guesses)",
        xaxis={
            "title": "epoch",
            "dtick": 1 if len(epochs) <= 30 else None,
            "domain": [0, 0.56] if by_band else [0, 1],
        },
        yaxis={"title": "share of wrong guesses", "tickformat": ".0%", "rangemode": "tozero"},
        xaxis3={
            "domain": [0.74, 1],
            "anchor": "y3",
            "tickformat": ".0%",
            "title": f"in the band, epoch {epochs[-1]}" if by_band else None,
            "rangemode": "tozero",
            "visible": bool(by_band),
        },
        yaxis3={
            "anchor": "x3",
            "autorange": "reversed",
            "automargin": True,
            "tickfont": {"size": 10},
            "visible": bool(by_band),
        },
        yaxis2={
            "title": f"{source} distance",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 60, "r": 60, "t": 50, "b": 40},
        template="plotly_white",
        uirevision="relatedness",
    )
    return fig
