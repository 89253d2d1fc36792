"""Confusion explorer (``/confusion``): the zoomable top-5 confusion matrix of a run's epochs.

Callbacks are thin: they check inputs and route them to dashboard.confusion.service, which
reads the run through epochscope.reader, renders with datashader and builds the figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, callback, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import config
from dashboard.confusion import data, export, service
from dashboard.confusion.figure import FIG_HEIGHT, FIG_WIDTH, HoverGrid
from dashboard.confusion.relatedness import relatedness_figure
from dashboard.confusion.render import SCALES, warm_up
from dashboard.confusion.view import next_view
from dashboard.shell import tolerant
from epochscope.reader import list_runs, prediction_epochs, safe_run_dir

dash.register_page(
    __name__, path="/confusion", name="Confusion", title="Epochscope: confusion explorer"
)

# numba compiles datashader's kernels on first use (~1-2 s): pay it at start-up, not on the
# first user's first view
warm_up()

PLAY_MS = 900
REFRESH_MS = 5000  # new epochs of a live run join the slider
GRAPH_CONFIG = {
    "displaylogo": False,
    "scrollZoom": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toImage"],
}
SIDE = {"flex": "1 1 22rem", "minWidth": "20rem", "maxWidth": "40rem"}


def _radio(id_: str, options: list[tuple[str, str]], value: str) -> dcc.RadioItems:
    return dcc.RadioItems(
        id=id_,
        options=[{"label": label, "value": v} for v, label in options],
        value=value,
        inline=True,
        inputStyle={"marginRight": "0.25rem"},
        labelStyle={"marginRight": "0.8rem"},
    )


def layout(run: str | list[str] | None = None, **_query: Any) -> html.Div:
    controls = html.Div(
        [
            html.Label("Run"),
            dcc.Dropdown(id="confusion-run", clearable=False, style={"width": "14rem"}),
            _radio("confusion-mode", [("top5", "top-5"), ("top1", "top-1")], "top5"),
            _radio(
                "confusion-order",
                [("wordnet", "WordNet order"), ("index", "index"), ("cluster", "clustered")],
                "wordnet",
            ),
            _radio(
                "confusion-scale",
                [("eq_hist", "equalised"), ("log", "log"), ("linear", "linear")],
                "eq_hist",
            ),
        ],
        style={"display": "flex", "gap": "1rem", "alignItems": "center", "flexWrap": "wrap"},
    )
    evolution = html.Div(
        [
            html.Button("Play", id="confusion-play", n_clicks=0),
            html.Div(
                dcc.Slider(id="confusion-epoch", min=1, max=1, step=1, value=None, marks=None),
                style={"flex": "1", "minWidth": "16rem"},
            ),
            html.Span(id="confusion-epoch-label", style={"minWidth": "6rem"}),
            html.Button("PNG of this view", id="confusion-export-png", n_clicks=0),
            html.Button("GIF of all epochs", id="confusion-export-gif", n_clicks=0),
            dcc.Download(id="confusion-download-png"),
            dcc.Download(id="confusion-download-gif"),
            dcc.Interval(id="confusion-interval", interval=PLAY_MS, disabled=True),
            dcc.Interval(id="confusion-refresh", interval=REFRESH_MS),
        ],
        style={"display": "flex", "gap": "0.8rem", "alignItems": "center", "margin": "0.5rem 0"},
    )
    matrix = html.Div(
        [
            # image-rendering is inherited: the SVG <image> of the layout image shows each
            # class as a crisp square when zoomed in, instead of a blur
            html.Div(
                dcc.Graph(
                    id="confusion-graph",
                    config=GRAPH_CONFIG,
                    figure={"layout": {"width": FIG_WIDTH, "height": FIG_HEIGHT}},
                    clear_on_unhover=True,
                ),
                style={"imageRendering": "pixelated", "width": f"{FIG_WIDTH}px"},
            ),
            dcc.Tooltip(id="confusion-tooltip", direction="right"),
            html.Div(id="confusion-info", className="hint"),
        ],
        style={"flex": f"0 0 {FIG_WIDTH}px"},
    )
    side = html.Div(
        [
            html.H4("Images of a cell", style={"margin": "0.2rem 0"}),
            html.Div(
                "Click a cell (or a row of the table below) to list its validation images.",
                id="confusion-drill",
                className="hint",
                style={"maxHeight": "30rem", "overflowY": "auto"},
            ),
            html.H4("Most confused pairs", style={"margin": "0.8rem 0 0.2rem"}),
            dcc.Dropdown(id="confusion-band", placeholder="All bands", clearable=True),
            dash_table.DataTable(
                id="confusion-pairs",
                columns=[
                    {"name": "true", "id": "true"},
                    {"name": "predicted", "id": "predicted"},
                    {"name": "count", "id": "count", "type": "numeric"},
                    {"name": "% of true", "id": "share", "type": "numeric"},
                ],
                page_size=12,
                style_cell={
                    "fontSize": "0.8rem",
                    "textAlign": "left",
                    "maxWidth": "12rem",
                    "overflow": "hidden",
                    "textOverflow": "ellipsis",
                },
                style_table={"overflowX": "auto"},
            ),
        ],
        style=SIDE,
    )
    return html.Div(
        [
            controls,
            evolution,
            html.Div([matrix, side], style={"display": "flex", "gap": "1rem", "flexWrap": "wrap"}),
            dcc.Graph(
                id="confusion-relatedness",
                config={"displaylogo": False},
                style={"height": "22rem", "maxWidth": f"{FIG_WIDTH}px"},
            ),
            dcc.Store(id="confusion-view"),
            # ?run=NAME (the first when repeated) chooses the run shown first
            dcc.Store(id="confusion-wanted-run", data=run[0] if isinstance(run, list) else run),
        ],
        className="page",
    )


# --- helpers: inputs to run directories --------------------------------------------------------
def _run_dir(run: str | None) -> Path:
    if not run:
        raise PreventUpdate
    try:
        return safe_run_dir(config.runs_dir(), run)
    except (ValueError, LookupError):
        raise PreventUpdate from None


def _context(run: str, kind: str, run_dir: Path) -> list[Any]:
    return [run, kind, data.run_meta(run_dir).num_classes]


# --- run and epoch choice ----------------------------------------------------------------------
@callback(
    Output("confusion-run", "options"),
    Output("confusion-run", "value"),
    Input("shell-runs", "value"),
    Input("confusion-wanted-run", "data"),
    State("confusion-run", "value"),
)
@tolerant
def run_choices(selected: list[str] | None, wanted: str | None, current: str | None):
    runs_dir = config.runs_dir()
    names = [s.name for s in list_runs(runs_dir) if prediction_epochs(runs_dir / s.name)]
    from_shell = dash.ctx.triggered_id == "shell-runs"
    asked = [*(selected or []), wanted] if from_shell else [wanted, *(selected or [])]
    preferred = [r for r in asked if r in names]
    value = current if current in names else (preferred or names or [None])[0]
    if from_shell and preferred and current not in (selected or []):
        value = preferred[0]  # a run picked in the shell's picker is shown here too
    return [{"label": n, "value": n} for n in names], value


@callback(
    Output("confusion-epoch", "max"),
    Output("confusion-epoch", "marks"),
    Output("confusion-epoch", "value"),
    Input("confusion-run", "value"),
    Input("confusion-refresh", "n_intervals"),
    State("confusion-epoch", "max"),
    State("confusion-epoch", "value"),
)
@tolerant
def epoch_choices(run: str | None, _n: int | None, old_max: int | None, current: int | None):
    epochs = data.epochs(_run_dir(run))
    if not epochs:
        raise PreventUpdate
    last = epochs[-1]
    run_changed = dash.ctx.triggered_id == "confusion-run"
    if not run_changed and last == old_max and current is not None:
        raise PreventUpdate  # polled, nothing new
    # follow a live run while the slider sits on its latest epoch
    follow = run_changed or current is None or current == old_max or current > last
    value = last if follow else current
    step = max(1, math.ceil(last / 15))
    marks = {e: str(e) for e in range(1, last + 1, step)} | {last: str(last)}
    return last, marks, value


@callback(
    Output("confusion-interval", "disabled"),
    Output("confusion-play", "children"),
    Output("confusion-epoch", "value", allow_duplicate=True),
    Input("confusion-play", "n_clicks"),
    State("confusion-interval", "disabled"),
    State("confusion-epoch", "value"),
    State("confusion-epoch", "max"),
    prevent_initial_call=True,
)
def toggle_play(_clicks: int, disabled: bool, epoch: int | None, last: int | None):
    if disabled:  # start; from the first epoch when sitting on the last
        start = 1 if epoch is None or epoch >= (last or 1) else epoch
        return False, "Pause", start
    return True, "Play", dash.no_update


@callback(
    Output("confusion-epoch", "value", allow_duplicate=True),
    Output("confusion-interval", "disabled", allow_duplicate=True),
    Output("confusion-play", "children", allow_duplicate=True),
    Input("confusion-interval", "n_intervals"),
    State("confusion-epoch", "value"),
    State("confusion-epoch", "max"),
    prevent_initial_call=True,
)
def play_step(_n: int, epoch: int | None, last: int | None):
    if epoch is None or last is None:
        raise PreventUpdate
    if epoch >= last:
        return dash.no_update, True, "Play"  # stop at the latest epoch
    return epoch + 1, dash.no_update, dash.no_update


# --- the matrix ---------------------------------------------------------------------------------
@callback(
    Output("confusion-graph", "figure"),
    Output("confusion-view", "data"),
    Output("confusion-info", "children"),
    Output("confusion-epoch-label", "children"),
    Input("confusion-run", "value"),
    Input("confusion-epoch", "value"),
    Input("confusion-mode", "value"),
    Input("confusion-order", "value"),
    Input("confusion-scale", "value"),
    Input("confusion-graph", "relayoutData"),
    State("confusion-view", "data"),
)
@tolerant
def update_matrix(
    run: str | None,
    epoch: int | None,
    mode: str,
    kind: str,
    scale: str,
    relayout: dict | None,
    previous: dict | None,
):
    run_dir = _run_dir(run)
    if epoch is None or epoch not in data.epochs(run_dir) or scale not in SCALES:
        raise PreventUpdate
    context = _context(run, kind, run_dir)
    from_graph = dash.ctx.triggered_id == "confusion-graph"
    if from_graph and relayout and not any(k.startswith(("xaxis", "yaxis")) for k in relayout):
        raise PreventUpdate  # autosize and other events that move nothing
    x, y = next_view(relayout, previous, context[2], context, from_graph)
    view = service.matrix_view(run_dir, epoch, mode, kind, scale, x, y)
    state = {
        "context": context,
        "x": list(x),
        "y": list(y),
        "grid": view.grid.to_dict(),
        "epoch": epoch,
    }
    info = (
        f"Showing slots {x[0]:.0f}-{x[1]:.0f} (predicted) x {y[0]:.0f}-{y[1]:.0f} (true) · "
        f"image {view.image_bytes / 1024:.0f} KB, rendered in {view.seconds * 1000:.0f} ms · "
        "drag to zoom, double-click for the whole matrix"
    )
    return view.figure, state, info, f"epoch {epoch}"


def _cell(event: dict | None, view: dict | None, run: str | None, mode: str, kind: str):
    if not event or not event.get("points") or not view or view.get("context", [None])[0] != run:
        return None, None
    point = event["points"][0]
    if point.get("curveNumber", 0) != 0:
        return None, None
    run_dir = _run_dir(run)
    grid = HoverGrid(**view["grid"])
    cell = service.cell_at(run_dir, view["epoch"], mode, kind, grid, point["x"], point["y"])
    return cell, point


def _cell_text(run_dir: Path, cell: service.Cell, mode: str) -> list:
    t = service.describe_class(run_dir, cell.true)
    p = service.describe_class(run_dir, cell.pred)
    what = "have it in their top-5" if mode == "top5" else "are predicted as it"
    lines = [
        html.Div([html.B("true: "), f"{t['name']} ({t['wnid']})", html.Small(f" {t['band']}")]),
        html.Div(
            [html.B("predicted: "), f"{p['name']} ({p['wnid']})", html.Small(f" {p['band']}")]
        ),
        html.Div(f"count {cell.count} · {cell.share:.0%} of the {cell.images} images {what}"),
    ]
    if cell.grouped:
        lines.append(html.Small("(the largest cell under the pointer; zoom in for each cell)"))
    return lines


@callback(
    Output("confusion-tooltip", "show"),
    Output("confusion-tooltip", "bbox"),
    Output("confusion-tooltip", "children"),
    Input("confusion-graph", "hoverData"),
    State("confusion-view", "data"),
    State("confusion-run", "value"),
    State("confusion-mode", "value"),
    State("confusion-order", "value"),
)
@tolerant
def hover(hover_data: dict | None, view: dict | None, run: str | None, mode: str, kind: str):
    cell, point = _cell(hover_data, view, run, mode, kind)
    if cell is None:
        return False, dash.no_update, dash.no_update
    text = _cell_text(_run_dir(run), cell, mode)
    return (
        True,
        point.get("bbox"),
        html.Div(text, id="confusion-hover-text", style={"fontSize": "0.85rem"}),
    )


@callback(
    Output("confusion-drill", "children"),
    Input("confusion-graph", "clickData"),
    Input("confusion-pairs", "active_cell"),
    State("confusion-pairs", "derived_viewport_data"),
    State("confusion-view", "data"),
    State("confusion-run", "value"),
    State("confusion-mode", "value"),
    State("confusion-order", "value"),
)
@tolerant
def drill_down(
    click: dict | None,
    active: dict | None,
    table_rows: list[dict] | None,
    view: dict | None,
    run: str | None,
    mode: str,
    kind: str,
):
    run_dir = _run_dir(run)
    if dash.ctx.triggered_id == "confusion-pairs":
        if not active or not table_rows or active["row"] >= len(table_rows) or not view:
            raise PreventUpdate
        row = table_rows[active["row"]]
        true, pred = row["true_index"], row["pred_index"]
    else:
        cell, _ = _cell(click, view, run, mode, kind)
        if cell is None:
            raise PreventUpdate
        true, pred = cell.true, cell.pred
    epoch = view["epoch"]
    images = service.drill(run_dir, epoch, mode, true, pred)
    t, p = service.describe_class(run_dir, true), service.describe_class(run_dir, pred)
    head = html.Div(
        [
            html.B(t["name"]),
            " → ",
            html.B(p["name"]),
            f" · epoch {epoch} · {len(images)} image(s) shown",
        ],
        id="confusion-drill-head",
    )
    return [head, *(_image_card(run_dir, im, true, pred) for im in images)]


def _image_card(run_dir: Path, im: service.DrillImage, true: int, pred: int) -> html.Div:
    thumb = (
        html.Img(
            src=im.thumbnail,
            style={
                "width": "96px",
                "height": "96px",
                "imageRendering": "pixelated",
                "objectFit": "contain",
            },
        )
        if im.thumbnail
        else html.Div("no image", className="hint", style={"width": "96px", "fontSize": "0.75rem"})
    )
    guesses = [
        html.Li(
            f"{name} {p:.0%}",
            style={
                "fontWeight": "bold" if k == true else "normal",
                "color": "#b35900" if k == pred and k != true else "inherit",
            },
        )
        for k, name, p in im.top5
    ]
    return html.Div(
        [
            thumb,
            html.Div(
                [html.Small(f"#{im.row} {im.path}"), html.Ol(guesses, style={"margin": 0})],
                style={"fontSize": "0.8rem", "overflow": "hidden"},
            ),
        ],
        className="confusion-image",
        style={
            "display": "flex",
            "gap": "0.5rem",
            "borderTop": "1px solid #eee",
            "padding": "0.3rem 0",
        },
    )


# --- side table and relatedness -----------------------------------------------------------------
@callback(
    Output("confusion-band", "options"),
    Input("confusion-run", "value"),
)
@tolerant
def band_options(run: str | None):
    return [{"label": b, "value": b} for b in service.band_names(_run_dir(run))]


@callback(
    Output("confusion-pairs", "data"),
    Output("confusion-pairs", "active_cell"),
    Input("confusion-run", "value"),
    Input("confusion-epoch", "value"),
    Input("confusion-mode", "value"),
    Input("confusion-band", "value"),
)
@tolerant
def pairs_table(run: str | None, epoch: int | None, mode: str, band: str | None):
    run_dir = _run_dir(run)
    if epoch is None or epoch not in data.epochs(run_dir):
        raise PreventUpdate
    return service.pairs(run_dir, epoch, mode, band), None


@callback(
    Output("confusion-relatedness", "figure"),
    Input("confusion-run", "value"),
    Input("confusion-epoch", "max"),
)
@tolerant
def relatedness_chart(run: str | None, _last: int | None):
    run_dir = _run_dir(run)
    epochs, values = data.relatedness_series(run_dir)
    return relatedness_figure(epochs, values)


# --- exports ------------------------------------------------------------------------------------
@callback(
    Output("confusion-download-png", "data"),
    Input("confusion-export-png", "n_clicks"),
    State("confusion-view", "data"),
    State("confusion-run", "value"),
    State("confusion-mode", "value"),
    State("confusion-order", "value"),
    State("confusion-scale", "value"),
    prevent_initial_call=True,
)
@tolerant
def export_png(_clicks: int, view: dict | None, run: str | None, mode: str, kind: str, scale: str):
    run_dir = _run_dir(run)
    if not view:
        raise PreventUpdate
    epoch = view["epoch"]
    (frame,) = export.run_frames(
        run_dir,
        [epoch],
        mode,
        kind,
        scale,
        tuple(view["x"]),
        tuple(view["y"]),
        min_size=1000,
        max_size=2000,
    )
    name = f"{run}-epoch{epoch:04d}-{mode}-{kind}.png"
    return dcc.send_bytes(export.png_bytes(frame), name)


@callback(
    Output("confusion-download-gif", "data"),
    Input("confusion-export-gif", "n_clicks"),
    State("confusion-view", "data"),
    State("confusion-run", "value"),
    State("confusion-mode", "value"),
    State("confusion-order", "value"),
    State("confusion-scale", "value"),
    prevent_initial_call=True,
)
@tolerant
def export_gif(_clicks: int, view: dict | None, run: str | None, mode: str, kind: str, scale: str):
    run_dir = _run_dir(run)
    if not view:
        raise PreventUpdate
    frames = export.run_frames(
        run_dir,
        data.epochs(run_dir),
        mode,
        kind,
        scale,
        tuple(view["x"]),
        tuple(view["y"]),
        min_size=600,
        max_size=600,
    )
    return dcc.send_bytes(export.gif_bytes(frames), f"{run}-{mode}-{kind}-epochs.gif")
