"""The data map (``/data-map``): the layout and its callbacks. Every training image of a run
with training statistics, at the variability and confidence of its given label's probability
over the epochs up to the one chosen, coloured by region or correctness; zoom to look closer,
click for the image and its history.

Callbacks are thin: they route inputs to service.py, which reads the run through its Run. The
view's state is in its URL (link.py); pages/data_map.py registers the URL.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import config, runs
from dashboard.data_map import link, service
from dashboard.data_map.figure import history_figure, waiting_spec
from dashboard.kit import picker, url, zoom
from dashboard.kit.cards import image_card
from dashboard.kit.controls import radio
from dashboard.kit.points import warm_up as _warm_up
from dashboard.kit.zoom import GRAPH_CONFIG, HoverGrid
from dashboard.shell import tolerant
from epochscope import train_labels

REFRESH_MS = 10_000  # a live run's new epochs join the choice of the last epoch
COLOURS = [("band", "region"), ("correctness", "correctness")]

if config.warm_up_at_start():
    _warm_up()


def layout(**query: Any) -> html.Div:
    view = link.view_from_query(query)
    return html.Div(
        [
            dcc.Store(id="data-map-wanted", data=view),
            dcc.Store(id="data-map-url"),
            dcc.Store(id="data-map-url-written"),
            dcc.Store(id="data-map-image", data=view["image"]),
            html.Div(
                [
                    html.Label("Run "),
                    dcc.Dropdown(id="data-map-run", clearable=False, style={"minWidth": "16rem"}),
                    html.Label("epochs up to"),
                    dcc.Dropdown(id="data-map-last", clearable=False, style={"width": "7rem"}),
                    html.Label("Colour by ", style={"marginLeft": "1rem"}),
                    radio("data-map-colour", COLOURS, view["colour"]),
                ],
                className="controls",
                style={"display": "flex", "alignItems": "center", "gap": "0.5rem"},
            ),
            html.P(
                "Each training image at the mean (confidence) and spread (variability) of the "
                "probability the training step gave its label. Low confidence and low "
                "variability (bottom left, 'hard') is where wrong labels gather; the ranking "
                "is on the Labels page's training tab.",
                className="hint",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            dcc.Graph(
                                id="data-map-graph",
                                figure=waiting_spec("Choose a run with training statistics"),
                                config=GRAPH_CONFIG,
                            ),
                            html.Div(id="data-map-info", className="hint"),
                        ]
                    ),
                    html.Div(
                        [html.Div(id="data-map-legend"), html.Div(id="data-map-drill")],
                        style={"flex": "1 1 22rem", "minWidth": "20rem", "maxWidth": "36rem"},
                    ),
                ],
                style={"display": "flex", "gap": "1rem", "flexWrap": "wrap"},
            ),
            dcc.Store(id="data-map-view"),
            dcc.Interval(id="data-map-refresh", interval=REFRESH_MS),
        ],
        className="page",
    )


picker.register("data-map-run", wanted="data-map-wanted")


@callback(
    Output("data-map-last", "options"),
    Output("data-map-last", "value"),
    Input("data-map-run", "value"),
    Input("data-map-refresh", "n_intervals"),
    State("data-map-last", "value"),
    State("data-map-last", "options"),
    State("data-map-wanted", "data"),
)
@tolerant
def last_epochs(
    run: str | None,
    _n: int | None,
    current: int | None,
    shown: list | None,
    wanted: dict | None,
):
    opened = runs.named(run)
    epochs = train_labels.stats_epochs(opened)
    options = [{"label": str(e), "value": e} for e in epochs]
    run_changed = dash.ctx.triggered_id != "data-map-refresh"
    if not run_changed and options == shown:
        raise PreventUpdate
    asked = (wanted or {}).get("last") if (wanted or {}).get("run") in (run, None) else None
    if run_changed and current is None and asked in epochs:
        return options, asked  # ?last=E on first load
    following = not shown or current == shown[-1]["value"]  # on the newest: stay on it
    if not epochs:
        return [], None
    value = current if current in epochs and not (run_changed or following) else epochs[-1]
    return options, value


def _ranges(relayout: dict | None, previous: dict | None, context: list) -> tuple:
    full = (service.X_EXTENT, service.Y_EXTENT)
    x, y = zoom.next_ranges(relayout, previous, context, full, lambda r: r)
    return service.clamp_x(x), service.clamp_y(y)


@callback(
    Output("data-map-graph", "figure"),
    Output("data-map-view", "data"),
    Output("data-map-info", "children"),
    Input("data-map-run", "value"),
    Input("data-map-last", "value"),
    Input("data-map-colour", "value"),
    Input("data-map-graph", "relayoutData"),
    State("data-map-view", "data"),
    State("data-map-wanted", "data"),
)
@tolerant
def update_map(
    run: str | None,
    last: int | None,
    colour: str,
    relayout: dict | None,
    previous: dict | None,
    wanted: dict | None = None,
):
    opened = runs.named(run)
    if colour not in service.COLOUR_BY:
        raise PreventUpdate
    trigger = dash.ctx.triggered_id
    if trigger == "data-map-graph" and not zoom.moves_axes(relayout):
        raise PreventUpdate  # autosize and other events that move nothing
    context = [run]
    x, y = _ranges(relayout if trigger == "data-map-graph" else None, previous, context)
    if previous is None and wanted and wanted.get("run") in (run, None):  # a link's zoom
        x = service.clamp_x(tuple(wanted["x"])) if wanted.get("x") else x
        y = service.clamp_y(tuple(wanted["y"])) if wanted.get("y") else y
    view = service.map_view(opened, last, colour, x, y)  # type: ignore[arg-type]
    if view.state != "ready":
        return view.figure, None, view.message
    state = {
        "context": context,
        "last": view.epochs[-1],
        "x": list(view.x),
        "y": list(view.y),
        "grid": view.grid.to_dict() if view.grid else None,
    }
    info = (
        f"{view.drawn:,} training images in view, rendered in {view.seconds * 1000:.0f} ms · "
        "drag to zoom, double-click for the whole map, click a point for its image and history"
    )
    return view.figure, state, info


@callback(
    Output("data-map-image", "data"),
    Input("data-map-graph", "clickData"),
    State("data-map-view", "data"),
    State("data-map-run", "value"),
    prevent_initial_call=True,
)
@tolerant
def clicked(event: dict | None, view: dict | None, run: str | None):
    if not event or not view or not view.get("grid") or not event.get("points"):
        raise PreventUpdate
    point = event["points"][0]
    if not all(isinstance(point.get(k), int | float) for k in ("x", "y")):
        raise PreventUpdate  # a malformed event
    grid = HoverGrid(**view["grid"])
    radius = (grid.dx, grid.dy)  # a cell's centre to any point of it and its neighbours' edge
    index = service.nearest_image(runs.named(run), view["last"], point["x"], point["y"], radius)
    if index is None:
        raise PreventUpdate
    return index


@callback(
    Output("data-map-drill", "children"),
    Input("data-map-image", "data"),
    Input("data-map-view", "data"),
    State("data-map-run", "value"),
)
@tolerant
def drill_down(index: int | None, view: dict | None, run: str | None):
    if index is None or not view:
        return html.P("Click a point for its image and its history.", className="hint")
    opened = runs.named(run)
    labels, _ = train_labels.train_index(opened)
    if not 0 <= index < len(labels):
        return html.P(f"training image {index} is not in this run", className="error")
    d = service.image_detail(opened, view["last"], index)
    n = d.numbers
    body = [
        html.Div([html.Span(d.label, className="labels-given"), " → ",
                  html.B(d.suggested, className="labels-suggested")]),
        html.Small(f"confidence {n['confidence']:.3f} · variability {n['variability']:.3f}"),
        html.Small(f"AUM {n['aum']:+.2f} · right {n['correctness']:.0%} of epochs · "
                   f"forgotten {n['forgetting']}x"),
        html.Small(f"#{d.index} {d.path}", className="hint"),
    ]  # fmt: skip
    title = f"training image #{d.index} over epochs (marker: green right, red wrong)"
    return [
        image_card(d.thumbnail, body, "data-map-image-card"),
        dcc.Graph(
            id="data-map-history",
            figure=history_figure(d.history, title),
            config={"displaylogo": False},
        ),
    ]


@callback(
    Output("data-map-url", "data"),
    Input("data-map-run", "value"),
    Input("data-map-last", "value"),
    Input("data-map-colour", "value"),
    Input("data-map-view", "data"),
    Input("data-map-image", "data"),
)
def write_link(
    run: str | None, last: int | None, colour: str, view: dict | None, image: int | None
) -> str:
    if not run or last is None or not view or view.get("context") != [run]:
        raise PreventUpdate  # the run's map is drawn first: a half-made link is no entry
    return link.view_query(run, last, colour, view, image)


url.register_writer("data-map-url", push=("x", "y", "image"))


@callback(
    Output("data-map-legend", "children"),
    Input("data-map-run", "value"),
    Input("data-map-last", "value"),
    Input("data-map-colour", "value"),
)
@tolerant
def legend(run: str | None, last: int | None, colour: str):
    if last is None or colour not in service.COLOUR_BY:
        raise PreventUpdate
    try:
        rows = service.legend(runs.named(run), last, colour)  # type: ignore[arg-type]
    except LookupError:
        return None
    return html.Ul(
        [
            html.Li(
                [html.Span("■ ", style={"color": c}), f"{name} ({n:,})"],
                style={"fontSize": "0.8rem", "listStyle": "none"},
            )
            for name, c, n in rows
        ],
        id="data-map-legend-list",
        style={"paddingLeft": 0},
    )
