"""Training page (``/``): live curves, device panel and progress of the chosen runs. The
layout and its callbacks; figures, the poll, settings and mistakes charts are its modules."""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import runs
from dashboard.shell import selection, tolerant
from dashboard.training import figures, live, mistakes
from dashboard.training.hparams import hparam_rows, run_hparams

log = logging.getLogger(__name__)

POLL_MS = 1000  # a new epoch is on screen within about a second of being written
MISTAKES_POLL_MS = 3000  # the relatedness chart changes once an epoch: a slower, cheap poll


def layout(**_query: Any) -> html.Div:
    graphs = [
        dcc.Graph(
            id=f"training-graph-{panel}",
            figure=figures.build_figure(panel, []),
            config={"displaylogo": False},
            className=f"graph graph-{panel}",
        )
        for panel in figures.PANELS
    ]
    return html.Div(
        [
            html.Div(id="training-progress", className="progress-list"),
            html.Div(id="training-errors", className="error"),
            html.Details(
                [
                    html.Summary("Hyper-parameters (values that differ between runs marked)"),
                    html.Div(id="training-hparams"),
                ],
                id="training-hparams-box",
                open=True,
                className="row-wide",
            ),
            html.Div(graphs[:1], className="row-wide"),
            html.Div(graphs[1:5], className="grid-2"),
            html.Div(graphs[5:], className="row-wide"),
            # "Are the mistakes related to the true class?", per run, from its prediction
            # files; refreshed only when a run gains an epoch of predictions.
            html.Div(id="training-mistakes", className="row-wide"),
            dcc.Interval(id="training-mistakes-interval", interval=MISTAKES_POLL_MS),
            dcc.Store(id="training-mistakes-key", storage_type="memory"),
            dcc.Interval(id="training-interval", interval=POLL_MS),
            dcc.Store(id="training-state", storage_type="memory"),
        ],
        className="page",
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def progress_card(p: dict[str, Any]) -> html.Div:
    epoch = f"epoch {p['epoch']} of {p['epochs']}" if p["epochs"] else f"epoch {p['epoch']}"
    parts = [
        html.Strong(p["run"]),
        html.Span(p["state"], className=f"badge state-{p['state']}"),
        html.Span(epoch, className="training-epoch"),
    ]
    if p["step"] and p["steps_per_epoch"]:
        parts.append(html.Span(f"step {p['step']} of {p['steps_per_epoch']}"))
    if p["val_top5"] is not None:
        top1 = f"{p['val_top1']:.1%}" if p["val_top1"] is not None else "-"
        parts.append(html.Span(f"val top-1 {top1} · top-5 {p['val_top5']:.1%}"))
    if p["state"] == "running":
        parts.append(html.Span(f"ETA {_duration(p['eta_s'])}"))
    if p["error"]:
        parts.append(html.Div(f"Error: {p['error']}", className="error"))
    return html.Div(parts, className="progress-card")


#: panels drawn even before their first point ("no data yet"); the others only once a run has
#: data for them (a run without device samples or throughput gets no empty chart)
ALWAYS_DRAWN = ("accuracy",)


def panel_styles(empty: list[str]) -> list[dict[str, str]]:
    """The graphs' styles: hidden when no chosen run has data for them."""
    return [
        {"display": "none"} if p in empty and p not in ALWAYS_DRAWN else {} for p in figures.PANELS
    ]


@callback(
    [Output(f"training-graph-{panel}", "figure") for panel in figures.PANELS],
    [Output(f"training-graph-{panel}", "style") for panel in figures.PANELS],
    Output("training-progress", "children"),
    Output("training-errors", "children"),
    Output("training-state", "data"),
    Input("training-interval", "n_intervals"),
    Input("shell-runs", "value"),
    State("training-state", "data"),
)
@tolerant
def update_training(_n: int | None, names: list[str] | None, state: dict | None):
    chosen, note = selection(names)
    update = live.poll(runs.provider(), chosen, state)
    if note:
        update.errors.append(note)
    if update.empty and not update.full:
        raise PreventUpdate  # nothing new: the answer is an empty 204
    figs = [
        update.panels[p] if update.panels[p] is not None else dash.no_update for p in figures.PANELS
    ]
    progress = (
        [progress_card(p) for p in update.progress]
        if update.progress is not None
        else dash.no_update
    )
    errors = "; ".join(update.errors) if update.full else dash.no_update
    styles = panel_styles(list(update.state.get("empty", [])))
    return *figs, *styles, progress, errors, update.state


def _prediction_epochs_by_run(names: list[str]) -> dict[str, list[list[int]]]:
    """Each run's epochs with predictions and with embeddings: the charts change with them."""
    provider = runs.provider()
    return {
        run: [provider.epochs(run, "predictions"), provider.epochs(run, "embeddings")]
        for run in names
    }


@callback(
    Output("training-mistakes", "children"),
    Output("training-mistakes-key", "data"),
    Input("training-mistakes-interval", "n_intervals"),
    Input("shell-runs", "value"),
    State("training-mistakes-key", "data"),
)
@tolerant
def update_mistakes(_n: int | None, names: list[str] | None, key: dict | None):
    new_key = _prediction_epochs_by_run(selection(names)[0])
    if new_key == key:
        raise PreventUpdate  # no new prediction file: nothing is sent
    graphs = []
    for run, (epochs, embedded) in new_key.items():
        if epochs or embedded:
            graphs += mistakes.run_graphs(run, runs.run)
    return graphs, new_key


def hparams_table(names: list[str]) -> html.Div | html.P:
    """Settings of the chosen runs side by side: those that differ (marked) and the well-known
    ones first, the rest folded under "N more settings"."""
    by_run = {}
    provider = runs.provider()
    for run in names:
        try:
            by_run[run] = run_hparams(provider.check(run), provider)
        except (ValueError, LookupError):
            continue
    if not by_run:
        return html.P("No run chosen.", className="hint")
    head = html.Tr([html.Th("setting"), *(html.Th(r) for r in by_run)])

    def table(rows: list) -> html.Table:
        body = [
            html.Tr(
                [html.Td(row.name), *(html.Td(v) for v in row.values)],
                className="hparam-differs" if row.differs else None,
                title="differs between the runs" if row.differs else None,
            )
            for row in rows
        ]
        return html.Table([html.Thead(head), html.Tbody(body)], className="hparams")

    rows = hparam_rows(by_run)
    shown = [r for r in rows if not r.folded]
    folded = [r for r in rows if r.folded]
    parts: list[Any] = [table(shown)]
    if folded:
        parts.append(
            html.Details(
                [html.Summary(f"{len(folded)} more settings"), table(folded)],
                className="hparams-more",
            )
        )
    return html.Div(parts)


@callback(Output("training-hparams", "children"), Input("shell-runs", "value"))
@tolerant
def update_hparams(runs: list[str] | None):
    return hparams_table(runs or [])
