"""The training page's charts of what a run gets wrong, epoch by epoch: relatedness of the
mistakes, the band silhouette in embedding space, accuracy per band, calibration (ECE). Pure
functions of a Run; the page's callback only asks for the chosen runs' graphs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dash import dcc, html

from dashboard.kit.band_chart import band_accuracy_figure
from dashboard.kit.calibration_chart import ece_figure
from dashboard.kit.relatedness import relatedness_figure
from dashboard.kit.silhouette_chart import silhouette_figure
from epochscope.labels import LABEL_STATS_MISSING
from epochscope.run import Run

log = logging.getLogger(__name__)


def _graph(kind: str, run: str, figure: Any) -> dcc.Graph:
    return dcc.Graph(
        id={"type": f"training-{kind}-graph", "run": run},
        figure=figure,
        config={"displaylogo": False},
        className="graph",
    )


def run_graphs(run: str, open_run: Callable[[str], Run]) -> list[Any]:
    """The charts of run ``run`` that have data; none when the run cannot be read now (a file
    mid-replacement or damaged: this run only, the next poll tries again)."""
    try:
        run_view = open_run(run)
        done, values = run_view.relatedness_series()  # empty without a hierarchy
        per_epoch = [run_view.band_accuracy(e) for e in run_view.epochs]
        # the band silhouette in embedding space, from each epoch's embeddings file
        sil_epochs, silhouettes = run_view.silhouette_series()
    except Exception as e:
        log.warning("mistakes of %s: %s: %s", run, type(e).__name__, str(e)[:200])
        return []
    graphs: list[Any] = []
    if done:
        title = f"{run}: are the mistakes related to the true class?"
        graphs.append(_graph("mistakes", run, relatedness_figure(done, values, title=title)))
    if any(v is not None for v in silhouettes):
        groups = run_view.silhouette_groups
        title = f"{run}: do the {groups} separate in the embedding space? (silhouette)"
        graphs.append(_graph("silhouette", run, silhouette_figure(sil_epochs, silhouettes,
                                                                  groups, title)))  # fmt: skip
    if any(per_epoch):
        title = f"{run}: top-1 accuracy per band (validation)"
        graphs.append(_graph("bands", run, band_accuracy_figure(run_view.epochs, per_epoch, title)))
    try:
        ece = run_view.ece_series()  # empty for a run from before the label arrays
    except Exception as e:  # a damaged label file: this chart only
        log.warning("calibration of %s: %s: %s", run, type(e).__name__, str(e)[:200])
        return graphs
    return [*graphs, ece_panel(run, ece)]


def ece_panel(run: str, series: dict[str, list]) -> dcc.Graph | html.P:
    """The run's ECE over epochs, or why it has none (its files predate the label arrays)."""
    if not series["epoch"]:
        return html.P(
            f"{run}: no calibration curve: {LABEL_STATS_MISSING}.",
            id={"type": "training-ece-missing", "run": run},
            className="hint",
        )
    title = f"{run}: calibration over epochs (ECE, 15 bins; temperature)"
    return _graph("ece", run, ece_figure(series, title))
