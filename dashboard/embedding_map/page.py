"""The embedding map (``/map``): the layout and its callbacks. An epoch's validation images
laid out in 2-D by what the network sees in them, every point drawn with datashader, coloured by
band or class.

Callbacks are thin: they route inputs to service.py, which reads the run through its Run. A
layout not computed yet is computed by a background thread of the worker (jobs.py); the page
polls while it is. The view's state is in its URL (link.py); pages/embedding_map.py registers
the URL.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import config, runs
from dashboard.embedding_map import link, service
from dashboard.embedding_map.extent import EXTENT, clamp
from dashboard.embedding_map.figure import waiting_spec
from dashboard.kit import epochs as kit_epochs
from dashboard.kit import picker, url, zoom
from dashboard.kit.cards import image_card
from dashboard.kit.controls import radio
from dashboard.kit.points import warm_up as _warm_up
from dashboard.kit.zoom import GRAPH_CONFIG, HoverGrid
from dashboard.shell import tolerant
from epochscope.embeddings import EMBEDDINGS_MISSING
from epochscope.run import Run

POLL_MS = 1000  # while a layout is computed: the page asks again every second
REFRESH_MS = 5000  # new epochs of a live run join the slider
PLAY_MS = 1200  # play: the next epoch this long after the last one was drawn (at the earliest)

if config.warm_up_at_start():
    _warm_up()


def layout(**query: Any) -> html.Div:
    view = link.view_from_query(query)
    return html.Div(
        [
            dcc.Store(id="map-wanted", data=view),
            dcc.Store(id="map-url"),
            dcc.Store(id="map-url-written"),
            html.Div(
                [
                    html.Label("Run "),
                    dcc.Dropdown(id="map-run", clearable=False, style={"minWidth": "16rem"}),
                    html.Label("Colour by ", style={"marginLeft": "1rem"}),
                    radio("map-colour", [("band", "band"), ("class", "class")], view["colour"]),
                ],
                className="controls",
                style={"display": "flex", "alignItems": "center", "gap": "0.5rem"},
            ),
            html.Div(
                [
                    html.Button("Play", id="map-play", n_clicks=0),
                    html.Span("epoch", id="map-epoch-label", style={"minWidth": "5rem"}),
                    html.Div(
                        dcc.Slider(id="map-epoch", min=1, max=1, step=None, value=None),
                        style={"flex": "1"},
                    ),
                ],
                style={"display": "flex", "alignItems": "center", "gap": "0.5rem"},
            ),
            html.Div(
                [
                    html.Div(
                        [
                            dcc.Graph(
                                id="map-graph",
                                figure=waiting_spec("Choose a run with embeddings"),
                                config=GRAPH_CONFIG,
                                clear_on_unhover=True,
                            ),
                            dcc.Tooltip(id="map-tooltip"),
                            html.Div(id="map-info", className="hint"),
                        ]
                    ),
                    html.Div(
                        [html.Div(id="map-legend"), html.Div(id="map-drill")],
                        style={"flex": "1 1 22rem", "minWidth": "20rem", "maxWidth": "36rem"},
                    ),
                ],
                style={"display": "flex", "gap": "1rem", "flexWrap": "wrap"},
            ),
            dcc.Store(id="map-view"),
            dcc.Interval(id="map-poll", interval=POLL_MS, disabled=True),
            dcc.Interval(id="map-refresh", interval=REFRESH_MS),
            dcc.Interval(id="map-play-interval", interval=PLAY_MS, disabled=True),
        ],
        className="page",
    )


picker.register("map-run", wanted="map-wanted")


@callback(
    Output("map-epoch", "min"),
    Output("map-epoch", "max"),
    Output("map-epoch", "marks"),
    Output("map-epoch", "value"),
    Input("map-run", "value"),
    Input("map-refresh", "n_intervals"),
    State("map-epoch", "max"),
    State("map-epoch", "value"),
    State("map-wanted", "data"),
)
@tolerant
def epoch_choices(
    run: str | None, _n: int | None, old_max: int | None, current: int | None, wanted: dict | None
):
    epochs = runs.named(run).embedding_epochs
    if not epochs:
        return 1, 1, {}, None
    last = epochs[-1]
    run_changed = dash.ctx.triggered_id == "map-run"
    if not run_changed and last == old_max and current in epochs:
        raise PreventUpdate
    value = kit_epochs.follow(epochs, current, old_max, run_changed)
    asked = (wanted or {}).get("epoch")
    if current is None and (wanted or {}).get("run") in (run, None) and asked in epochs:
        value = asked  # ?epoch=E on first load
    return epochs[0], last, kit_epochs.every_epoch_marks(epochs), value


kit_epochs.register_play("map-epoch", "map-play", "map-play-interval", ready="map-view")


def _ranges(relayout: dict | None, previous: dict | None, context: list) -> tuple:
    """The visible ranges: a zoom or pan moves the axes it names, a double-click (autorange)
    shows the whole map, another run starts from the whole map."""
    return zoom.next_ranges(relayout, previous, context, (EXTENT, EXTENT), clamp)


@callback(
    Output("map-graph", "figure"),
    Output("map-view", "data"),
    Output("map-info", "children"),
    Output("map-epoch-label", "children"),
    Output("map-poll", "disabled"),
    Input("map-run", "value"),
    Input("map-epoch", "value"),
    Input("map-colour", "value"),
    Input("map-graph", "relayoutData"),
    Input("map-poll", "n_intervals"),
    State("map-view", "data"),
    State("map-wanted", "data"),
)
@tolerant
def update_map(
    run: str | None,
    epoch: int | None,
    colour: str,
    relayout: dict | None,
    _poll: int | None,
    previous: dict | None,
    wanted: dict | None = None,
):
    opened = runs.named(run)
    if colour not in service.COLOUR_BY:
        raise PreventUpdate
    if not opened.embedding_epochs:
        return waiting_spec(EMBEDDINGS_MISSING), None, EMBEDDINGS_MISSING, "epoch", True
    if epoch is None or epoch not in opened.embedding_epochs:
        raise PreventUpdate
    trigger = dash.ctx.triggered_id
    if trigger == "map-graph" and not zoom.moves_axes(relayout):
        raise PreventUpdate  # autosize and other events that move nothing
    context = [run]
    x, y = _ranges(relayout if trigger == "map-graph" else None, previous, context)
    if previous is None and wanted and wanted.get("run") in (run, None):  # a link's zoom
        x = clamp(tuple(wanted["x"])) if wanted.get("x") else x
        y = clamp(tuple(wanted["y"])) if wanted.get("y") else y
    view = service.map_view(opened, epoch, colour, x, y)  # type: ignore[arg-type]
    if view.state not in ("ready", "previous"):
        return view.figure, None, view.message, f"epoch {epoch}", view.state != "computing"
    state = {
        "context": context,
        "epoch": view.epoch,
        "x": list(view.x),
        "y": list(view.y),
        "grid": view.grid.to_dict() if view.grid else None,
    }
    info = (
        f"{view.drawn:,} of {len(opened.labels):,} images in view · image "
        f"{view.image_bytes / 1024:.0f} KB, rendered in {view.seconds * 1000:.0f} ms · drag to "
        "zoom, double-click for the whole map, hover for a class, click for its images"
    )
    if view.state == "previous":  # the newest laid-out epoch while this one is computed
        return view.figure, state, view.message, f"epoch {view.epoch}", False
    return view.figure, state, info, f"epoch {epoch}", True


@callback(
    Output("map-url", "data"),
    Input("map-run", "value"),
    Input("map-epoch", "value"),
    Input("map-colour", "value"),
    Input("map-view", "data"),
)
def write_link(run: str | None, epoch: int | None, colour: str, view: dict | None) -> str:
    if not run or epoch is None or not view or view.get("context") != [run]:
        raise PreventUpdate  # the run's map is drawn first: a half-made link is no entry
    return link.view_query(run, epoch, colour, view)


url.register_writer("map-url", push=("x", "y"))


def _point_row(event: dict | None, view: dict | None, run: str | None) -> tuple[Run, int, dict]:
    if not event or not view or not view.get("grid") or not event.get("points"):
        raise PreventUpdate
    opened = runs.named(run)
    point = event["points"][0]
    if not all(isinstance(point.get(k), int | float) for k in ("x", "y")):
        raise PreventUpdate  # a malformed event
    radius = HoverGrid(**view["grid"]).radius
    row = service.nearest_row(opened, view["epoch"], point["x"], point["y"], radius)
    if row is None:
        raise PreventUpdate
    return opened, row, point


@callback(
    Output("map-tooltip", "show"),
    Output("map-tooltip", "bbox"),
    Output("map-tooltip", "children"),
    Input("map-graph", "hoverData"),
    State("map-view", "data"),
    State("map-run", "value"),
)
@tolerant
def hover(event: dict | None, view: dict | None, run: str | None):
    try:
        opened, row, point = _point_row(event, view, run)
    except PreventUpdate:
        return False, dash.no_update, dash.no_update
    d = service.describe_row(opened, row)
    band = f" · {d['band']}" if d["band"] else ""
    return (
        True,
        point.get("bbox"),
        html.Div(
            [html.B(d["name"]), f"{band} · image #{row}"],
            id="map-hover-text",
            style={"fontSize": "0.85rem"},
        ),
    )


@callback(
    Output("map-drill", "children"),
    Input("map-graph", "clickData"),
    State("map-view", "data"),
    State("map-run", "value"),
)
@tolerant
def drill_down(event: dict | None, view: dict | None, run: str | None):
    opened, row, _ = _point_row(event, view, run)
    epoch = view["epoch"]  # type: ignore[index]
    rows = service.rows_near(opened, epoch, row)
    d = service.describe_row(opened, row)
    head = html.Div(
        [html.B(d["name"]), f" · image #{row} and its {len(rows) - 1} nearest on the map"],
        id="map-drill-head",
    )
    cards = []
    for im in service.images(opened, epoch, rows):
        label = opened.names[int(opened.labels[im.row])]
        guess = f" · guessed {im.top5[0][1]} {im.top5[0][2]:.0%}" if im.top5 else ""
        body = [html.Small([html.B(label), f" #{im.row}{guess}"])]
        cards.append(image_card(im.thumbnail, body, "map-image", size=72))
    return [head, *cards]


@callback(Output("map-legend", "children"), Input("map-run", "value"), Input("map-colour", "value"))
@tolerant
def legend(run: str | None, colour: str):
    opened = runs.named(run)
    rows = service.legend(opened) if colour == "band" else []
    note = None
    if not rows:  # coloured by class: by choice, or because the run has no bands
        rows = service.class_legend(opened)
        why = "" if colour == "class" else " (this run's classes have no bands)"
        note = html.P(f"Each class its own colour{why}.", className="hint")
        if not rows:
            return note
    return html.Div(
        [
            note,
            html.Ul(
                [
                    html.Li(
                        [html.Span("■ ", style={"color": c}), f"{name} ({n:,})"],
                        style={"fontSize": "0.8rem", "listStyle": "none"},
                    )
                    for name, c, n in rows
                ],
                id="map-legend-list",
                style={"paddingLeft": 0, "columns": 2},
            ),
        ]
    )
