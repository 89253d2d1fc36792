"""The confusion explorer (``/confusion``, and ``/classes`` with the per-class table first): its
callbacks, and the layout of each URL (the components are laid out in layout.py).

Callbacks are thin: they check inputs and route them to service.py, which reads the run through
its Run, renders with datashader and builds the figures. The view's state is in its URL
(link.py: zoom, class, the drilled cell, ...); pages/confusion.py registers both URLs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
from dash import ALL, Input, Output, State, callback, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import config, runs
from dashboard.confusion import export, service, state
from dashboard.confusion.figure import plot_size
from dashboard.confusion.layout import (
    CLASS_COLUMNS,
    COMPARE_COLUMNS,
    PAIR_COLUMNS,
    PAIR_COLUMNS_ROW,
)
from dashboard.confusion.layout import layout as _layout
from dashboard.confusion.link import view_query as link_query
from dashboard.confusion.render import SCALES, warm_up
from dashboard.kit import epochs as kit_epochs
from dashboard.kit import images as kit_images
from dashboard.kit import picker, url
from dashboard.kit import similar as similar_view
from dashboard.kit.cards import image_card
from dashboard.kit.relatedness import relatedness_figure
from dashboard.kit.zoom import HoverGrid, moves_axes
from dashboard.shell import tolerant
from epochscope.analysis.difference import ClassMismatch
from epochscope.run import Run

# numba compiles datashader's kernels on first use (~2 s here): pay it at start-up, not on the
# first user's first view
if config.warm_up_at_start():
    warm_up()


def layout(**query: Any) -> html.Div:
    """``/confusion``: the matrix first."""
    return _layout(focus="matrix", **query)


def classes_layout(**query: Any) -> html.Div:
    """``/classes``: the per-class table beside the matrix."""
    return _layout(focus="classes", **query)


#: what the matrix shows (the update's first inputs, and what a link records)
VIEW_INPUTS = [
    Input(f"confusion-{name}", "value")
    for name in ("run", "epoch", "mode", "order", "scale", "options", "compare", "compare-epoch")
]


def _context(run: str, kind: str, opened: Run) -> list[Any]:
    return [run, kind, opened.num_classes]


def _compare(compare: str | None, compare_epoch: int | None) -> service.Compare | None:
    """The other side of a difference view, when one is chosen and has that epoch."""
    if not compare or compare_epoch is None:
        return None
    opened = runs.named(compare)
    if compare_epoch not in opened.epochs:
        return None
    return service.Compare(opened, int(compare_epoch))


def _checked_compare(
    opened: Run, compare: str | None, compare_epoch: int | None
) -> tuple[service.Compare | None, str]:
    """The compared side and the problem said beside the matrix ("" when none): a run with
    other classes is no comparison."""
    other = _compare(compare, compare_epoch)
    if other is not None:
        try:
            opened.check_same_classes(other.run)
        except ClassMismatch as e:
            return None, str(e)
    return other, ""


def _view_options(options: list[str] | None) -> dict[str, Any]:
    options = options or []
    return {
        "hide_diagonal": "hide_diagonal" in options,
        "norm": "row" if "row" in options else "count",
    }


# --- run and epoch choice ----------------------------------------------------------------------
picker.register("confusion-run", having="predictions", wanted="confusion-wanted")


@callback(Output("confusion-compare", "options"), Input("shell-runs", "value"))
@tolerant
def compare_choices(_selected: list[str] | None):
    # any run with predictions may be compared (a link's run is chosen by the layout)
    return picker.options(runs.provider().names(having="predictions"))


@callback(
    Output("confusion-epoch", "max"),
    Output("confusion-epoch", "marks"),
    Output("confusion-epoch", "value"),
    Output("confusion-since", "options"),
    Input("confusion-run", "value"),
    Input("confusion-refresh", "n_intervals"),
    State("confusion-epoch", "max"),
    State("confusion-epoch", "value"),
    State("confusion-wanted", "data"),
)
@tolerant
def epoch_choices(
    run: str | None, _n: int | None, old_max: int | None, current: int | None, wanted: dict | None
):
    epochs = runs.named(run).epochs
    if not epochs:
        raise PreventUpdate
    last = epochs[-1]
    run_changed = dash.ctx.triggered_id == "confusion-run"
    if not run_changed and last == old_max and current is not None:
        raise PreventUpdate  # polled, nothing new
    # follow a live run while the slider sits on its latest epoch (every whole epoch a stop)
    value = kit_epochs.follow(range(1, last + 1), current, old_max, run_changed)
    asked = (wanted or {}).get("epoch")
    if current is None and (wanted or {}).get("run") in (run, None) and asked in epochs:
        value = asked  # ?epoch=E on first load
    marks = kit_epochs.range_marks(last)
    return last, marks, value, [{"label": str(e), "value": e} for e in epochs]


@callback(
    Output("confusion-since", "value"),
    Input("confusion-since", "options"),
    State("confusion-since", "value"),
)
def since_default(options: list[dict] | None, current: int | None):
    values = [o["value"] for o in options or []]
    if not values or current in values:
        raise PreventUpdate
    return values[0]  # change since the first epoch, until the user picks another


@callback(
    Output("confusion-compare-epoch", "options"),
    Output("confusion-compare-epoch", "value"),
    Input("confusion-compare", "value"),
    Input("confusion-epoch", "value"),
    State("confusion-run", "value"),
    State("confusion-compare-epoch", "value"),
    State("confusion-wanted", "data"),
)
@tolerant
def compare_epochs(
    compare: str | None, epoch: int | None, run: str | None, current: int | None, wanted: dict
):
    if not compare:
        return [], None
    epochs = runs.named(compare).epochs
    changed = dash.ctx.triggered_id == "confusion-compare"
    value = state.compare_epoch(epochs, compare, run, epoch, current, wanted, changed)
    return [{"label": str(e), "value": e} for e in epochs], value


kit_epochs.register_play("confusion-epoch", "confusion-play", "confusion-interval")


# --- the viewport: the figure fills the window and follows resizes ------------------------------
clientside_callback(
    """
    function(_n, previous) {
        const now = {w: window.innerWidth, h: window.innerHeight};
        if (previous && previous.w === now.w && previous.h === now.h) {
            return window.dash_clientside.no_update;
        }
        return now;
    }
    """,
    Output("confusion-viewport", "data"),
    Input("confusion-viewport-poll", "n_intervals"),
    State("confusion-viewport", "data"),
)


# --- the matrix ---------------------------------------------------------------------------------
@callback(
    Output("confusion-graph", "figure"),
    Output("confusion-view", "data"),
    Output("confusion-info", "children"),
    Output("confusion-epoch-label", "children"),
    Output("confusion-compare-error", "children"),
    *VIEW_INPUTS,
    Input("confusion-graph", "relayoutData"),
    Input("confusion-viewport", "data"),
    Input("confusion-selected", "data"),
    Input("confusion-zoom", "data"),
    State("confusion-share", "data"),
    State("confusion-view", "data"),
    State("confusion-wanted", "data"),
)
@tolerant
def update_matrix(
    run: str | None,
    epoch: int | None,
    mode: str,
    kind: str,
    scale: str,
    options: list[str] | None,
    compare: str | None,
    compare_epoch: int | None,
    relayout: dict | None,
    viewport: dict | None,
    selected: int | None,
    zoom: dict | None,
    share: float | None,
    previous: dict | None,
    wanted: dict | None = None,
):
    opened = runs.named(run)
    if epoch is None or epoch not in opened.epochs or scale not in SCALES:
        raise PreventUpdate
    if not viewport:
        raise PreventUpdate  # the browser's size comes first (a fraction of a second)
    context = _context(run, kind, opened)
    from_graph = dash.ctx.triggered_id == "confusion-graph"
    if from_graph and relayout and not moves_axes(relayout):
        raise PreventUpdate  # autosize and other events that move nothing
    # the search sets the selection and the zoom at once: either may be named the trigger
    found = zoom if "confusion-zoom.data" in dash.ctx.triggered_prop_ids else None
    x, y = state.matrix_ranges(relayout, previous, context, from_graph, wanted, found)
    other, problem = _checked_compare(opened, compare, compare_epoch)
    how, size = _view_options(options), plot_size(viewport["w"], viewport["h"], share or 1.0)
    view = service.matrix_view(opened, epoch, mode, kind, scale, x, y, size=size, compare=other,
                               highlight=selected, **how)  # fmt: skip
    compared = (other.run.name, other.epoch) if other else None
    kept = state.stored_view(context, x, y, view.grid.to_dict(), epoch, compared, size,
                             how["hide_diagonal"])  # fmt: skip
    info = state.matrix_info(x, y, view.image_bytes, view.seconds)
    return view.figure, kept, info, f"epoch {epoch}", problem


@callback(
    Output("confusion-url", "data"),
    *VIEW_INPUTS,
    Input("confusion-view", "data"),
    Input("confusion-selected", "data"),
    Input("confusion-cell", "data"),
)
def link(*state: Any) -> str:
    run, epoch, view = state[0], state[1], state[8]
    if not run or epoch is None or not view or view.get("context", [None])[0] != run:
        raise PreventUpdate  # the run's view is drawn first: a half-made link is no entry
    return link_query(*state)


url.register_writer("confusion-url", push=("x", "y", "cls", "cell"))


def _state_compare(view: dict) -> service.Compare | None:
    if not view.get("compare"):
        return None
    name, epoch = view["compare"]
    return service.Compare(runs.named(name), int(epoch))


def _cell(event: dict | None, view: dict | None, run: str | None, mode: str, kind: str,
          options: list[str] | None):  # fmt: skip
    if not event or not event.get("points") or not view or view.get("context", [None])[0] != run:
        return None, None
    point = event["points"][0]
    if point.get("curveNumber", 0) != 0:
        return None, None
    grid = HoverGrid(**view["grid"])
    cell = service.cell_at(
        runs.named(run), view["epoch"], mode, kind, grid, point["x"], point["y"],
        compare=_state_compare(view), **_view_options(options),
    )  # fmt: skip
    return cell, point


def _cell_text(opened: Run, cell: service.Cell, mode: str, norm: str, view: dict) -> list:
    t = service.describe_class(opened, cell.true)
    p = service.describe_class(opened, cell.pred)
    what = "have it in their top-5" if mode == "top5" else "are predicted as it"
    lines = [
        html.Div([html.B("true: "), f"{t['name']} ({t['wnid']})", html.Small(f" {t['band']}")]),
        html.Div(
            [html.B("predicted: "), f"{p['name']} ({p['wnid']})", html.Small(f" {p['band']}")]
        ),
    ]
    if cell.other is not None:  # a difference view: both sides and the change
        b, b_epoch = view["compare"]
        a = f"{opened.name} epoch {view['epoch']}"
        lines += [
            html.Div(f"A ({a}): count {cell.count} of {cell.images} ({cell.share:.0%})"),
            html.Div(
                f"B ({b} epoch {b_epoch}): count {cell.other.count} of {cell.other.images}"
                f" ({cell.other.share:.0%})"
            ),
            html.Div(html.B(f"Δ share {100 * (cell.share - cell.other.share):+.1f} pt")),
        ]
    elif norm == "row":  # the colour is the row share: say it first
        of = "mistakes" if view.get("hide_diagonal") else "guesses"
        lines.append(
            html.Div(
                f"share {cell.row_share:.1%} of the true class's {of} · count {cell.count}"
                f" · {cell.share:.0%} of the {cell.images} images {what}"
            )
        )
    else:
        lines.append(
            html.Div(f"count {cell.count} · {cell.share:.0%} of the {cell.images} images {what}")
        )
    if cell.grouped:
        lines.append(html.Small("(the brightest cell under the pointer; zoom in for each cell)"))
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
    State("confusion-options", "value"),
)
@tolerant
def hover(hover_data: dict | None, view: dict | None, run: str | None, mode: str, kind: str,
          options: list[str] | None):  # fmt: skip
    cell, point = _cell(hover_data, view, run, mode, kind, options)
    if cell is None:
        return False, dash.no_update, dash.no_update
    norm = _view_options(options)["norm"]
    text = _cell_text(runs.named(run), cell, mode, norm, view)
    return (
        True,
        point.get("bbox"),
        html.Div(text, id="confusion-hover-text", style={"fontSize": "0.85rem"}),
    )


# --- selecting a class: search box or a row of the per-class table ------------------------------
@callback(
    Output("confusion-selected", "data"),
    Output("confusion-zoom", "data"),
    Output("confusion-search-result", "children"),
    Input("confusion-search", "value"),
    Input("confusion-classes", "active_cell"),
    State("confusion-classes", "derived_viewport_data"),
    State("confusion-run", "value"),
    State("confusion-order", "value"),
    prevent_initial_call=True,
)
@tolerant
def select_class(text: str | None, active: dict | None, rows: list[dict] | None,
                 run: str | None, kind: str):  # fmt: skip
    opened = runs.named(run)
    if dash.ctx.triggered_id == "confusion-classes":
        if (row := state.active_row(active, rows)) is None:
            raise PreventUpdate
        return row["index"], dash.no_update, ""
    found = service.find_classes(opened, text or "")
    if not found:
        return dash.no_update, dash.no_update, f"no class matches {text!r}" if text else ""
    index = found[0]
    x, y = service.zoom_to_class(opened, kind, index)
    name = service.describe_class(opened, index)["name"]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return index, {"run": run, "x": list(x), "y": list(y), "class": index}, f"{name}{more}"


@callback(
    Output("confusion-drill", "children"),
    Output("confusion-cell", "data"),
    Input("confusion-graph", "clickData"),
    Input("confusion-pairs", "active_cell"),
    Input("confusion-selected", "data"),
    Input("confusion-view", "data"),
    State("confusion-pairs", "derived_viewport_data"),
    State("confusion-drill", "children"),
    State("confusion-cell", "data"),
    State("confusion-run", "value"),
    State("confusion-mode", "value"),
    State("confusion-order", "value"),
    State("confusion-options", "value"),
)
@tolerant
def drill_down(
    click: dict | None,
    active: dict | None,
    selected: int | None,
    view: dict | None,
    table_rows: list[dict] | None,
    shown: Any,
    cell: list[int] | None,
    run: str | None,
    mode: str,
    kind: str,
    options: list[str] | None,
):
    """The images of a clicked cell or pair (kept as the cell, for the link) or of the
    selected class (the cell cleared); a link's cell or class once its first view is drawn."""
    opened = runs.named(run)
    if not view:
        raise PreventUpdate
    trigger = state.drill_trigger(dash.ctx.triggered_prop_ids, click, active)
    clicked = trigger == "confusion-graph"
    found = _cell(click, view, run, mode, kind, options)[0] if clicked else None
    target = state.drill_target(
        trigger, opened.num_classes, isinstance(shown, list), cell, selected,
        state.active_row(active, table_rows), found and (found.true, found.pred),
    )  # fmt: skip
    if target is None:
        raise PreventUpdate
    epoch = view["epoch"]
    if target.cell:
        listed = _drill_cell(opened, epoch, mode, *target.cell)
    else:
        listed = _drill_class(opened, epoch, target.cls)
    return listed, dash.no_update if target.from_link else target.stored


def _drill_class(opened: Run, epoch: int, index: int) -> list:
    """A class's validation images, wrong first guesses first, and the way to its likely
    mislabeled ones."""
    images = service.drill_class(opened, epoch, index)
    t = service.describe_class(opened, index)
    head = html.Div(
        [html.B(t["name"]), f" ({t['wnid']}) · epoch {epoch} · {len(images)} image(s),"
         " wrong first guesses first"],
        id="confusion-drill-head",
    )  # fmt: skip
    link = _labels_link(opened.name, epoch, f"Likely mislabeled images of {t['name']}",
                        label=index)  # fmt: skip
    return [head, link, *_thumbnail_note(opened), *(_image_card(im, index, -1) for im in images)]


def _drill_cell(opened: Run, epoch: int, mode: str, true: int, pred: int) -> list:
    """The validation images of one cell (true class, predicted class)."""
    images = service.drill(opened, epoch, mode, true, pred)
    t, p = service.describe_class(opened, true), service.describe_class(opened, pred)
    head = html.Div(
        [html.B(t["name"]), " → ", html.B(p["name"]),
         f" · epoch {epoch} · {len(images)} image(s) shown"],
        id="confusion-drill-head",
    )  # fmt: skip
    link = _labels_link(opened.name, epoch, f"Likely mislabeled: given {t['name']}, more likely "
                        f"{p['name']}", label=true, suggested=pred)  # fmt: skip
    return [head, link, *_thumbnail_note(opened),
            *(_image_card(im, true, pred) for im in images)]  # fmt: skip


def _labels_link(run: str, epoch: int, text: str, **classes: int) -> dcc.Link:
    """A link to the likely-mislabeled view filtered to the class (and suggested class)."""
    query = urlencode([("run", run), ("epoch", epoch), *classes.items()])
    return dcc.Link(f"{text} →", href=f"/labels?{query}", id="confusion-drill-labels")


def _thumbnail_note(opened: Run) -> list[html.P]:
    """Why a run's images show no thumbnails, when its data root is not allowed."""
    note = kit_images.thumbnail_source(opened).note
    return [html.P(note, id="confusion-drill-note", className="hint")] if note else []


def _image_card(im: kit_images.DrillImage, true: int, pred: int) -> html.Div:
    guesses = [
        html.Li(
            f"{name} {p:.0%}",
            className="guess-true" if k == true else "guess-pred" if k == pred else None,
        )
        for k, name, p in im.top5
    ]
    body = [
        html.Small(f"#{im.row} {im.path}"),
        html.Ol(guesses, className="guesses"),
        html.Button(
            "similar",
            id={"type": "drill-similar", "row": im.row},
            className="drill-similar",
            title="the nearest validation images in this epoch's embeddings",
        ),
    ]
    return image_card(im.thumbnail, body, "confusion-image")


@callback(
    Output("confusion-similar", "children"),
    Input({"type": "drill-similar", "row": ALL}, "n_clicks"),
    State("confusion-view", "data"),
    State("confusion-run", "value"),
    prevent_initial_call=True,
)
@tolerant
def similar_images(clicks: list[int | None], view: dict | None, run: str | None):
    trigger = dash.ctx.triggered_id
    if not view or not isinstance(trigger, dict) or not any(clicks or []):
        raise PreventUpdate
    opened = runs.named(run)
    row = int(trigger["row"])
    if not 0 <= row < len(opened.labels):
        raise PreventUpdate
    try:
        epoch, items = similar_view.row_neighbours(opened, view["epoch"], row)
    except LookupError as e:
        return html.P(str(e), className="hint", id="confusion-similar-note")
    name = opened.names[int(opened.labels[row])]
    title = f"Nearest to #{row} ({name}) in epoch {epoch}'s embeddings, closest first"
    return similar_view.strip(items, title, "confusion-similar-strip")


# --- side tables and relatedness ----------------------------------------------------------------
@callback(
    Output("confusion-band", "options"),
    Output("confusion-classes-band", "options"),
    Input("confusion-run", "value"),
)
@tolerant
def band_options(run: str | None):
    options = [{"label": b, "value": b} for b in service.band_names(runs.named(run))]
    return options, options


@callback(
    Output("confusion-pairs", "data"),
    Output("confusion-pairs", "active_cell"),
    Output("confusion-pairs", "columns"),
    Input("confusion-run", "value"),
    Input("confusion-epoch", "value"),
    Input("confusion-mode", "value"),
    Input("confusion-band", "value"),
    Input("confusion-options", "value"),
)
@tolerant
def pairs_table(run: str | None, epoch: int | None, mode: str, band: str | None,
                options: list[str] | None):  # fmt: skip
    opened = runs.named(run)
    if epoch is None or epoch not in opened.epochs:
        raise PreventUpdate
    how = _view_options(options)
    rows = service.pairs(opened, epoch, mode, band, **how)
    return rows, None, PAIR_COLUMNS_ROW if how["norm"] == "row" else PAIR_COLUMNS


@callback(
    Output("confusion-classes", "data"),
    Output("confusion-classes", "columns"),
    Output("confusion-classes", "active_cell"),
    Input("confusion-run", "value"),
    Input("confusion-epoch", "value"),
    Input("confusion-since", "value"),
    Input("confusion-classes-band", "value"),
    Input("confusion-compare", "value"),
    Input("confusion-compare-epoch", "value"),
)
@tolerant
def classes_table(run: str | None, epoch: int | None, since: int | None, band: str | None,
                  compare: str | None, compare_epoch: int | None):  # fmt: skip
    opened = runs.named(run)
    if epoch is None or epoch not in opened.epochs:
        raise PreventUpdate
    other = _compare(compare, compare_epoch)
    try:
        rows = service.class_table(opened, epoch, since, other)
    except ClassMismatch:
        other, rows = None, service.class_table(opened, epoch, since)  # said beside the matrix
    if band:
        rows = [r for r in rows if r["band"] == band]
    columns = service.class_columns(opened, CLASS_COLUMNS)
    columns += COMPARE_COLUMNS if other is not None else []
    return rows, columns, None


@callback(
    Output("confusion-classes", "sort_by"),
    Output("confusion-classes", "page_current"),
    Input("confusion-worst", "n_clicks"),
    Input("confusion-improved", "n_clicks"),
    prevent_initial_call=True,
)
def quick_sorts(_worst: int, _improved: int):
    if dash.ctx.triggered_id == "confusion-worst":
        return [{"column_id": "top1", "direction": "asc"}], 0
    return [{"column_id": "d_since", "direction": "desc"}], 0


@callback(
    Output("confusion-relatedness", "figure"),
    Output("confusion-relatedness", "style"),
    Input("confusion-run", "value"),
    Input("confusion-epoch", "max"),
    State("confusion-relatedness", "style"),
)
@tolerant
def relatedness_chart(run: str | None, _last: int | None, style: dict | None):
    """Drawn only for a run with a hierarchy (WordNet or its own): without one there is no
    relatedness to measure."""
    opened = runs.named(run)
    epochs, values = opened.relatedness_series()
    shown = {**(style or {}), "display": "block" if opened.relations is not None else "none"}
    return relatedness_figure(epochs, values), shown


@callback(
    Output("confusion-order", "options"),
    Output("confusion-order", "value"),
    Input("confusion-run", "value"),
    State("confusion-order", "value"),
)
@tolerant
def order_options(run: str | None, kind: str | None):
    """The hierarchy order is offered under the name of the run's hierarchy (WordNet's or its
    own), and not at all for a run without one (its matrix starts clustered)."""
    options = service.order_options(runs.named(run))
    values = [o["value"] for o in options]
    return options, kind if kind in values else values[0]


# --- exports ------------------------------------------------------------------------------------
@callback(
    Output("confusion-download-png", "data"),
    Output("confusion-download-gif", "data"),
    Input("confusion-export-png", "n_clicks"),
    Input("confusion-export-gif", "n_clicks"),
    State("confusion-view", "data"),
    State("confusion-run", "value"),
    State("confusion-mode", "value"),
    State("confusion-order", "value"),
    State("confusion-scale", "value"),
    prevent_initial_call=True,
)
@tolerant
def export_view(_png: int, _gif: int, view: dict | None, run: str | None, mode: str, kind: str,
                scale: str):  # fmt: skip
    """The current view as a PNG, or every epoch of it as a GIF (one callback: the two differ
    only in which epochs and how large)."""
    opened = runs.named(run)
    if not view:
        raise PreventUpdate
    gif = dash.ctx.triggered_id == "confusion-export-gif"
    try:
        made = export.view_file(opened, view, mode, kind, scale, gif, config.gif_max_frames())
    except TimeoutError:
        raise PreventUpdate from None  # a GIF is being made in this worker: click again
    sent = dcc.send_bytes(*made)
    return (dash.no_update, sent) if gif else (sent, dash.no_update)
