"""The Dash app: a shell (nav, run picker, location) around the pages in dashboard/pages.

``gunicorn dashboard.app:server`` serves it (RUNS_DIR from the environment);
``python -m dashboard --runs-dir RUNS`` serves it the same way (dashboard/serving.py).
"""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Dash, Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import access, api, runs
from dashboard.shell import (
    NAV,
    default_runs,
    nav_href,
    picker_options,
    picker_signature,
    runs_from_search,
    selection,
    tolerant,
)

HERE = Path(__file__).resolve().parent

app = Dash(
    __name__,
    use_pages=True,
    pages_folder=str(HERE / "pages"),
    assets_folder=str(HERE / "static"),
    title="Epochscope",
    update_title=None,  # no "Updating..." flicker in the tab title on every poll
    suppress_callback_exceptions=True,
)
server = app.server
access.register(server)  # token, peers, request size: before every route
api.register(server)
access.register_callbacks(app)  # malformed callback bodies: 400, not a 500 from inside Dash

app.layout = html.Div(
    [
        dcc.Location(id="shell-location"),
        html.Header(
            [
                html.Span("Epochscope", className="brand"),
                html.Nav(
                    [
                        dcc.Link(label, href=path, id=f"shell-nav-{i}", className="nav-link")
                        for i, (label, path) in enumerate(NAV)
                    ]
                ),
                # dashboard/static/report-link.js points it at the run and epoch shown when
                # clicked (the pages keep them in the URL, which Dash's router does not see)
                html.A(
                    "Report",
                    id="shell-report",
                    href="/api/v1/report",
                    download="",
                    className="nav-link report-link",
                    title="Download an offline HTML report of the run and epoch shown",
                ),
                dcc.Dropdown(
                    id="shell-runs",
                    multi=True,
                    placeholder="Choose runs (several to compare)",
                    className="run-picker",
                ),
            ],
            className="shell-header",
        ),
        # new runs and changed states appear in the picker without a reload
        dcc.Interval(id="shell-runs-interval", interval=2000),
        dcc.Store(id="shell-runs-known"),
        dash.page_container,
    ]
)


@callback(
    Output("shell-runs", "options"),
    Output("shell-runs", "value"),
    Output("shell-runs-known", "data"),
    Input("shell-location", "search"),
    Input("shell-runs-interval", "n_intervals"),
    State("shell-runs", "value"),
    State("shell-runs-known", "data"),
)
@tolerant
def sync_runs(search: str | None, _n: int | None, current: list[str] | None, known: dict | None):
    """Picker options from RUNS; the value from ?run= (or the newest run) on page load.

    A run named in the URL that does not exist yet is chosen as soon as it appears, so
    /?run=demo opened before the trainer starts shows the demo when it begins.
    """
    if current is not None:
        current = selection(current)[0]  # a client's list: names once, at most EPOCHSCOPE_MAX_RUNS
    provider = runs.provider()
    summaries = provider.summaries()
    searches = {s.name: provider.search_words(s.name) for s in summaries}
    options = picker_options(summaries, searches)
    names = [s.name for s in summaries]
    wanted = runs_from_search(search)
    previous = (known or {}).get("names", [])
    if current is None or dash.ctx.triggered_id == "shell-location":
        if wanted:
            value = [n for n in wanted if n in names]
        else:
            value = current if current is not None else default_runs(summaries)
    else:
        appeared = [n for n in wanted if n in names and n not in previous and n not in current]
        value = [*current, *appeared]
    new_known = {"names": names, "signature": picker_signature(summaries, searches)}
    out = (
        options if new_known["signature"] != (known or {}).get("signature") else dash.no_update,
        value if value != current else dash.no_update,
        new_known if new_known != known else dash.no_update,
    )
    if all(o is dash.no_update for o in out):
        raise PreventUpdate  # nothing changed: the poll's answer is an empty 204
    return out


@callback(
    [Output(f"shell-nav-{i}", "href") for i in range(len(NAV))],
    Input("shell-runs", "value"),
)
def nav_links(runs: list[str] | None):
    return [nav_href(path, runs) for _, path in NAV]


# Dash finishes its set-up on the first request, and marks it done before doing it: a second
# request arriving meanwhile (a busy machine, several tabs at start-up) saw only some of the
# callbacks and answered 500 or an incomplete /_dash-dependencies. Done here, before serving.
with server.app_context():
    app._setup_server()
