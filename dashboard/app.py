"""The Dash app: a shell (nav, run picker, location) around the pages in dashboard/pages.

``gunicorn dashboard.app:server`` serves it (RUNS_DIR from the environment);
``python -m dashboard --runs-dir RUNS`` runs the development server.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlencode

import dash
from dash import Dash, Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate
from flask import Response, redirect, request

from dashboard import api, config
from dashboard.hparams import run_hparams, search_text
from dashboard.shell import NAV, default_runs, nav_href, picker_options, runs_from_search, tolerant
from epochscope.reader import list_runs

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
api.register(server)

COOKIE = "epochscope_auth"


def _cookie_value(token: str) -> str:
    # the cookie holds a digest, not the token itself
    return hmac.new(token.encode(), b"epochscope-cookie", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@server.before_request
def require_token() -> Response | None:
    """With a token set (--token or $EPOCHSCOPE_TOKEN), every route asks for it: a Bearer
    header, the cookie that ``?token=`` sets once, or 401."""
    token = config.token()
    if token is None:
        return None
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    if _same(bearer, token) or _same(request.cookies.get(COOKIE), _cookie_value(token)):
        return None
    if _same(request.args.get("token"), token):
        # drop the token from the address bar (history, Referer), keep it in a cookie
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        reply = redirect(request.path + ("?" + urlencode(rest) if rest else ""), code=303)
        reply.set_cookie(COOKIE, _cookie_value(token), httponly=True, samesite="Strict",
                         secure=request.is_secure)  # fmt: skip
        return reply
    return Response(
        "401 Unauthorized: this dashboard needs its access token\n",
        401,
        {"WWW-Authenticate": 'Bearer realm="epochscope"'},
        mimetype="text/plain",
    )


if not any(p["path"] == "/confusion" for p in dash.page_registry.values()):
    # until the confusion explorer's page exists, /confusion says so instead of a 404
    dash.register_page(
        "confusion_placeholder",
        path="/confusion",
        name="Confusion",
        layout=html.Div(
            [
                html.H2("Confusion explorer"),
                html.P("Not built yet. Meanwhile, see the training curves."),
                dcc.Link("Back to training", href="/"),
            ],
            className="page",
        ),
    )

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
    runs_dir = config.runs_dir()
    summaries = list_runs(runs_dir)
    searches = {s.name: search_text(run_hparams(runs_dir / s.name)) for s in summaries}
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
    new_known = {"names": names, "signature": repr(options)}
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
