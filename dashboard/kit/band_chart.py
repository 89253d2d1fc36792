"""Accuracy per band over epochs: which parts of the hierarchy learn first (training page)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from dashboard.kit.bands import band_colour

GROUPS = ("animals", "objects", "other")
GROUP_COLOURS = {"animals": "#1b7837", "objects": "#762a83", "other": "#8c6d31"}


def band_accuracy_figure(
    epochs: Sequence[int], per_epoch: Sequence[dict[str, float]], title: str = ""
) -> go.Figure:
    """Thick lines: animals, objects, other; thin lines: each band (click the legend to hide).

    ``per_epoch[i]`` maps group and band names to the top-1 accuracy at ``epochs[i]``.
    """
    names = list(dict.fromkeys(n for acc in per_epoch for n in acc))
    groups = [g for g in GROUPS if g in names]
    bands = [n for n in names if n not in GROUPS]
    titled = {
        groups[0] if groups else None: "animals / objects",
        bands[0] if bands else None: "bands",
    }
    fig = go.Figure()
    for name in groups + bands:
        group = name in GROUPS
        xs = [e for e, acc in zip(epochs, per_epoch, strict=True) if name in acc]
        ys = [acc[name] for acc in per_epoch if name in acc]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=name,
                mode="lines+markers" if group else "lines",
                line={
                    "width": 4 if group else 1.2,
                    "color": GROUP_COLOURS[name] if group else band_colour(name),
                },
                legendgroup="groups" if group else "bands",
                legendgrouptitle={"text": titled[name]} if name in titled else None,
                hovertemplate=f"{name}: %{{y:.1%}} at epoch %{{x}}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": title or "Top-1 accuracy per band (validation)", "font": {"size": 13}},
        xaxis={"title": "epoch", "dtick": 1 if len(epochs) <= 15 else None},
        yaxis={"title": "top-1 accuracy", "tickformat": ".0%", "rangemode": "tozero"},
        height=380,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        legend={"font": {"size": 10}, "groupclick": "toggleitem"},
        template="plotly_white",
    )
    return fig
