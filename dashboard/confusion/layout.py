"""The components of the confusion explorer, shared by ``/confusion`` (matrix first) and
``/classes`` (per-class table first). The callbacks live in page.py; this module only lays
out components, so both URLs show the same working explorer."""

from __future__ import annotations

from typing import Any

from dash import dash_table, dcc, html

from dashboard.confusion.figure import FIG_HEIGHT, FIG_WIDTH
from dashboard.confusion.link import view_from_query
from dashboard.kit.controls import radio
from dashboard.kit.zoom import GRAPH_CONFIG

PLAY_MS = 900
REFRESH_MS = 5000  # new epochs of a live run join the slider
VIEWPORT_POLL_MS = 400  # clientside only: the figure follows window resizes
SIDE = {"flex": "1 1 22rem", "minWidth": "20rem", "maxWidth": "40rem"}
CELL_STYLE = {
    "fontSize": "0.8rem",
    "textAlign": "left",
    "maxWidth": "14rem",
    "overflow": "hidden",
    "textOverflow": "ellipsis",
}
CLASS_COLUMNS = [
    {"name": "class", "id": "name"},
    {"name": "wnid", "id": "wnid"},
    {"name": "band", "id": "band"},
    {"name": "images", "id": "support", "type": "numeric"},
    {"name": "top-1 %", "id": "top1", "type": "numeric"},
    {"name": "top-5 %", "id": "top5", "type": "numeric"},
    {"name": "Δ prev (pt)", "id": "d_prev", "type": "numeric"},
    {"name": "Δ since (pt)", "id": "d_since", "type": "numeric"},
    {"name": "most confused with (top-1 count)", "id": "confused"},
]
# falls in red, and in a comparison red = A better, blue = B better (the matrix's colours)
DELTA_COLOURS = [
    {"if": {"filter_query": f"{{{col}}} {op} 0", "column_id": col}, "color": colour}
    for col, op, colour in (
        ("d_prev", "<", "#b00020"),
        ("d_since", "<", "#b00020"),
        ("delta_b", "<", "#2166ac"),
        ("delta_b", ">", "#b2182b"),
    )
]
PAIR_COLUMNS = [
    {"name": "true", "id": "true"},
    {"name": "predicted", "id": "predicted"},
    {"name": "count", "id": "count", "type": "numeric"},
    {"name": "% of true", "id": "share", "type": "numeric"},
]
# row-normalised: the share column is the cell's share of its row, as the colours are
PAIR_COLUMNS_ROW = [*PAIR_COLUMNS[:3], {"name": "% of row", "id": "share", "type": "numeric"}]
COMPARE_COLUMNS = [
    {"name": "top-1 % (B)", "id": "top1_b", "type": "numeric"},
    {"name": "Δ A-B (pt)", "id": "delta_b", "type": "numeric"},
]


def _controls(view: dict[str, Any]) -> html.Div:
    row = {"display": "flex", "gap": "1rem", "alignItems": "center", "flexWrap": "wrap"}
    return html.Div(
        [
            html.Div(
                [
                    html.Label("Run"),
                    dcc.Dropdown(id="confusion-run", clearable=False, style={"width": "14rem"}),
                    radio("confusion-mode", [("top5", "top-5"), ("top1", "top-1")], view["mode"]),
                    radio(
                        "confusion-order",
                        [
                            ("wordnet", "hierarchy order"),
                            ("index", "index"),
                            ("cluster", "clustered"),
                        ],
                        view["order"],
                    ),
                    radio(
                        "confusion-scale",
                        [("eq_hist", "equalised"), ("log", "log"), ("linear", "linear")],
                        view["scale"],
                    ),
                    dcc.Checklist(
                        id="confusion-options",
                        options=[
                            {"label": "hide the diagonal", "value": "hide_diagonal"},
                            {"label": "row-normalised", "value": "row"},
                        ],
                        value=view["options"],
                        inline=True,
                        inputStyle={"marginRight": "0.25rem"},
                        labelStyle={"marginRight": "0.8rem"},
                    ),
                ],
                style=row,
            ),
            html.Div(
                [
                    dcc.Input(
                        id="confusion-search",
                        type="search",
                        placeholder="find a class: name or wnid, Enter",
                        debounce=True,
                        style={"width": "18rem"},
                    ),
                    html.Span(id="confusion-search-result", className="hint"),
                    html.Label("Compare with"),
                    dcc.Dropdown(
                        id="confusion-compare",
                        # the run a link names, chosen from the start (its option with it: a
                        # value before its option would be dropped); the list comes next
                        options=[{"label": c, "value": c}] if (c := view["compare"]) else [],
                        value=view["compare"],
                        placeholder="no comparison",
                        clearable=True,
                        style={"width": "14rem"},
                    ),
                    html.Label("at epoch"),
                    dcc.Dropdown(
                        id="confusion-compare-epoch", clearable=False, style={"width": "7rem"}
                    ),
                    html.Span(id="confusion-compare-error", className="error"),
                ],
                style={**row, "marginTop": "0.4rem"},
            ),
        ]
    )


def _evolution() -> html.Div:
    return html.Div(
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


def _matrix() -> html.Div:
    return html.Div(
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
                style={"imageRendering": "pixelated"},
            ),
            dcc.Tooltip(id="confusion-tooltip", direction="right"),
            html.Div(id="confusion-info", className="hint"),
        ],
        style={"flex": "0 0 auto"},
    )


def _side() -> html.Div:
    return html.Div(
        [
            html.H4("Images of a cell or class", style={"margin": "0.2rem 0"}),
            html.Div(
                "Click a cell, a pair or a class below to list its validation images.",
                id="confusion-drill",
                className="hint",
                style={"maxHeight": "30rem", "overflowY": "auto"},
            ),
            # a clicked image's nearest validation images (its "similar" button)
            html.Div(id="confusion-similar"),
            html.H4("Most confused pairs", style={"margin": "0.8rem 0 0.2rem"}),
            dcc.Dropdown(id="confusion-band", placeholder="All bands", clearable=True),
            dash_table.DataTable(
                id="confusion-pairs",
                columns=PAIR_COLUMNS,
                page_size=12,
                style_cell=CELL_STYLE,
                style_table={"overflowX": "auto"},
            ),
        ],
        style=SIDE,
    )


def _classes() -> html.Div:
    return html.Div(
        [
            html.H4("Classes", style={"margin": "0.6rem 0 0.2rem"}),
            html.Div(
                [
                    html.Button("Worst classes", id="confusion-worst", n_clicks=0),
                    html.Button("Most improved", id="confusion-improved", n_clicks=0),
                    dcc.Dropdown(
                        id="confusion-classes-band",
                        placeholder="All bands",
                        clearable=True,
                        style={"width": "14rem"},
                    ),
                    html.Label("Δ since epoch"),
                    dcc.Dropdown(id="confusion-since", clearable=False, style={"width": "7rem"}),
                    html.Span(
                        "Sort by a column header; filter by name in the row under it.",
                        className="hint",
                    ),
                ],
                style={"display": "flex", "gap": "0.6rem", "alignItems": "center"},
            ),
            dash_table.DataTable(
                id="confusion-classes",
                columns=CLASS_COLUMNS,
                sort_action="native",
                filter_action="native",
                filter_options={"case": "insensitive"},
                page_action="native",
                page_size=20,
                style_cell=CELL_STYLE,
                style_table={"overflowX": "auto"},
                style_data_conditional=DELTA_COLOURS,
            ),
        ],
        id="confusion-classes-box",
    )


def layout(focus: str = "matrix", **query: Any) -> html.Div:
    """The page for a link's query (``view_from_query``); ``focus="classes"``: the per-class
    table beside the matrix, at half the width."""
    view = view_from_query(query)
    stores = [
        dcc.Store(id="confusion-view"),
        dcc.Store(id="confusion-selected", data=view["cls"]),
        # the drilled cell [true, predicted]: written by the drill-down, read back from a link
        dcc.Store(id="confusion-cell", data=list(view["cell"]) if view["cell"] else None),
        dcc.Store(id="confusion-zoom"),
        dcc.Store(id="confusion-viewport"),
        dcc.Store(id="confusion-share", data=0.5 if focus == "classes" else 1.0),
        dcc.Interval(id="confusion-viewport-poll", interval=VIEWPORT_POLL_MS),
        # the view a link names, shown first (run, epoch, compared run and epoch, zoom)
        dcc.Store(id="confusion-wanted", data=view),
        # the view as a link: written to the address bar as it changes
        dcc.Store(id="confusion-url"),
        dcc.Store(id="confusion-url-written"),
    ]
    relatedness = dcc.Graph(
        id="confusion-relatedness",
        config={"displaylogo": False},
        style={"height": "22rem", "maxWidth": f"{FIG_WIDTH}px"},
    )
    wrap = {"display": "flex", "gap": "1rem", "flexWrap": "wrap"}
    if focus == "classes":
        body = [
            html.Div(
                [
                    html.Div(
                        _classes(),
                        style={"flex": "1 1 0", "minWidth": "26rem", "overflow": "hidden"},
                    ),
                    html.Div([_matrix(), _side()], style={"flex": "0 1 auto"}),
                ],
                style=wrap,
            )
        ]
    else:
        body = [html.Div([_matrix(), _side()], style=wrap), _classes(), relatedness]
    if focus == "classes":
        body.append(relatedness)
    return html.Div([_controls(view), _evolution(), *body, *stores], className="page")
