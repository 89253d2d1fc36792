"""Likely mislabeled images and calibration (``/labels``): the layout and its callbacks.

The ranking is of the validation images (by the epoch's predictions) or, on the training tab,
of the training images (by the training statistics of the epochs up to the one chosen). The
whole view is in its URL (labels/link.py): ``?run=NAME&epoch=E&method=M&label=I&
suggested=J&scope=S&split=train``, written as it changes, so a copied link reproduces it (the
per-class table's and the drill-down's links fill in ``label`` and ``suggested``). Callbacks
are thin: the figures and cards come from labels/views.py, the numbers from epochscope.labels
and epochscope.train_labels.
"""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import runs
from dashboard.kit import picker, url
from dashboard.kit.cards import image_card
from dashboard.kit.controls import radio
from dashboard.labels import link, views
from dashboard.shell import tolerant
from epochscope import labels, train_labels

SPLITS_SHOWN = [("val", "validation set"), ("train", "training set")]
TITLES = {
    "val": "Likely mislabeled validation images",
    "train": "Likely mislabeled training images (fix these, then retrain: docs/api.md)",
}
METHODS_SHOWN = [("self_confidence", "self-confidence"), ("normalized_margin", "normalized margin")]
ROW = {"display": "flex", "gap": "0.8rem", "alignItems": "center", "flexWrap": "wrap"}


def _dropdown(id_: str, placeholder: str, width: str = "14rem", **kw: Any) -> dcc.Dropdown:
    return dcc.Dropdown(id=id_, placeholder=placeholder, style={"width": width}, **kw)


def layout(**query: Any) -> html.Div:
    wanted = link.view_from_query(query)
    controls = html.Div(
        [
            html.Label("Run"),
            _dropdown("labels-run", "run", clearable=False),
            html.Label("epoch"),
            _dropdown("labels-epoch", "epoch", "7rem", clearable=False),
            html.Label("given label"),
            _dropdown("labels-label", "any class"),
            html.Label("suggested"),
            _dropdown("labels-suggested", "any class"),
            radio("labels-split", SPLITS_SHOWN, wanted["split"]),
            html.Span(radio("labels-method", METHODS_SHOWN, wanted["method"]), id="labels-how"),
            html.Button("CSV of the whole ranking", id="labels-export", n_clicks=0),
            dcc.Download(id="labels-download"),
        ],
        style=ROW,
    )
    issues = html.Div(
        [
            html.H4(TITLES["val"], id="labels-title", style={"margin": "0.6rem 0 0.2rem"}),
            html.Div(id="labels-summary", className="hint"),
            html.Div(id="labels-issues", className="labels-grid"),
        ],
        style={"flex": "1 1 34rem", "minWidth": "24rem"},
    )
    reliability = html.Div(
        [
            html.H4("Calibration", style={"margin": "0.6rem 0 0.2rem"}),
            dcc.Dropdown(id="labels-group", value="all", clearable=False),
            dcc.Graph(id="labels-reliability", config={"displaylogo": False}, className="graph"),
        ],
        style={"flex": "1 1 28rem", "minWidth": "22rem", "maxWidth": "44rem"},
    )
    return html.Div(
        [
            controls,
            html.Div(id="labels-missing", className="error"),
            html.Div([issues, reliability], style={**ROW, "alignItems": "flex-start"}),
            dcc.Store(id="labels-wanted", data=wanted),
            dcc.Store(id="labels-url"),
            dcc.Store(id="labels-url-written"),
        ],
        className="page",
    )


picker.register("labels-run", having="predictions", wanted="labels-wanted")


@callback(
    Output("labels-epoch", "options"),
    Output("labels-epoch", "value"),
    Output("labels-label", "options"),
    Output("labels-label", "value"),
    Output("labels-suggested", "options"),
    Output("labels-suggested", "value"),
    Output("labels-group", "options"),
    Output("labels-group", "value"),
    Input("labels-run", "value"),
    State("labels-wanted", "data"),
)
@tolerant
def run_options(run: str | None, wanted: dict | None):
    opened = runs.named(run)
    epochs = opened.epochs
    if not epochs:
        raise PreventUpdate
    groups = views.group_options(opened)
    shown = link.restore(wanted, run, epochs, opened.num_classes, [g["value"] for g in groups])
    classes = [{"label": n, "value": i} for i, n in enumerate(opened.names)]
    epoch_options = [{"label": str(e), "value": e} for e in epochs]
    return (
        epoch_options, shown["epoch"], classes, shown["label"], classes, shown["suggested"],
        groups, shown["scope"],
    )  # fmt: skip


@callback(
    Output("labels-url", "data"),
    Input("labels-run", "value"),
    Input("labels-epoch", "value"),
    Input("labels-method", "value"),
    Input("labels-label", "value"),
    Input("labels-suggested", "value"),
    Input("labels-group", "value"),
    Input("labels-split", "value"),
)
def write_link(run: str | None, epoch: int | None, *choices: Any) -> str:
    if not run or epoch is None:
        raise PreventUpdate  # the run's epoch is chosen first: a half-made link is no entry
    return link.view_query(run, epoch, *choices)


# a filter or scope chosen is a step back can undo; the run, epoch and method are replaced
url.register_writer("labels-url", push=("label", "suggested", "scope", "split"))


def _card(card: views.IssueCard) -> html.Div:
    score = "-" if card.score is None else f"{card.score:.3f}"
    body = [
        html.Div(
            [
                html.Span(card.label, className="labels-given"),
                " → ",
                html.B(card.suggested, className="labels-suggested"),
            ]
        ),
        html.Small(f"score {score}" + (" · flagged" if card.flagged else "")),
        html.Small(card.band, className="hint") if card.band else None,
        html.Small(card.detail, className="hint") if card.detail else None,
        html.Small(f"#{card.row} {card.path}", className="hint"),
    ]
    return image_card(card.thumbnail, body, "labels-image")


@callback(
    Output("labels-issues", "children"),
    Output("labels-summary", "children"),
    Output("labels-missing", "children"),
    Input("labels-run", "value"),
    Input("labels-epoch", "value"),
    Input("labels-label", "value"),
    Input("labels-suggested", "value"),
    Input("labels-method", "value"),
    Input("labels-split", "value"),
)
@tolerant
def issues_view(
    run: str | None,
    epoch: int | None,
    label: int | None,
    suggested: int | None,
    method: str,
    split: str,
):
    opened = runs.named(run)
    if epoch not in opened.epochs:
        raise PreventUpdate
    if split == "train":
        cards, summary, missing = views.train_issues_view(opened, epoch, label, suggested)
    else:
        cards, summary, missing = views.issues_view(opened, epoch, method, label, suggested)
    return [_card(c) for c in cards], summary, missing


@callback(
    Output("labels-title", "children"),
    Output("labels-how", "style"),
    Input("labels-split", "value"),
)
def split_shown(split: str):
    """The training ranking has one method (confidence over the epochs): no choice shown."""
    return TITLES.get(split, TITLES["val"]), {"display": "none"} if split == "train" else {}


@callback(
    Output("labels-reliability", "figure"),
    Input("labels-run", "value"),
    Input("labels-epoch", "value"),
    Input("labels-group", "value"),
)
@tolerant
def reliability_view(run: str | None, epoch: int | None, group: str | None):
    opened = runs.named(run)
    if epoch not in opened.epochs:
        raise PreventUpdate
    return views.reliability_view(opened, epoch, group)


@callback(
    Output("labels-download", "data"),
    Input("labels-export", "n_clicks"),
    State("labels-run", "value"),
    State("labels-epoch", "value"),
    State("labels-label", "value"),
    State("labels-suggested", "value"),
    State("labels-method", "value"),
    State("labels-split", "value"),
    prevent_initial_call=True,
)
@tolerant
def export_csv(
    _n: int,
    run: str | None,
    epoch: int | None,
    label: int | None,
    suggested: int | None,
    method: str,
    split: str,
):
    opened = runs.named(run)
    if epoch not in opened.epochs:
        raise PreventUpdate
    how = {"label": label, "suggested": suggested}
    if split == "train":  # a reply holds ~200,000 rows; GET /api/v1/label-issues.csv any
        try:
            cols = train_labels.issue_columns(opened, None, epoch, **how)
        except LookupError:
            raise PreventUpdate from None  # the view already says what is missing
    else:
        cols = labels.issue_columns(opened, epoch, method=method, **how)
    part = "".join(f"-{k}{v}" for k, v in how.items() if v is not None)
    which = "-train" if split == "train" else ""
    name = f"{opened.name}-epoch{epoch:04d}{which}-label-issues{part}.csv"
    return dcc.send_string(views.issues_csv(cols), name)
