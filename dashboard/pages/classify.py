"""Classifier page (``/classify``): drop photos, see each one's top-5 at any epoch."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import config, inference, runs
from dashboard.classify_view import classify_uploads, demo_notice, result_card
from dashboard.shell import tolerant
from epochscope.reader import list_runs, model_epochs, safe_run_dir

dash.register_page(__name__, path="/classify", name="Classify", title="Epochscope: classify")


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.Label("Run"),
                    dcc.Dropdown(id="classify-run", clearable=False, className="classify-run"),
                    html.Label("Epoch"),
                    dcc.Dropdown(id="classify-epoch", clearable=False, className="classify-epoch"),
                ],
                className="classify-pickers",
            ),
            dcc.Upload(
                id="classify-upload",
                multiple=True,
                children=html.Div(["Drag and drop photos here, or ", html.A("choose files")]),
                className="classify-upload",
            ),
            # the photos stay in the browser; each epoch switch sends them again to classify
            dcc.Store(id="classify-uploads", storage_type="memory"),
            dcc.Interval(id="classify-interval", interval=5000),
            dcc.Loading(html.Div(id="classify-results"), type="dot"),
        ],
        className="page",
    )


# The browser keeps at most MAX_FILES photos whose base64 fits one request under the request
# limit, and names the ones it left out: the server would answer such a request with a 413.
clientside_callback(
    """
    function(contents, names) {
        if (!contents) { return window.dash_clientside.no_update; }
        var maxFiles = MAX_FILES, maxChars = MAX_CHARS, maxFile = MAX_FILE;
        var kept = [], keptNames = [], skipped = [], total = 0;
        for (var i = 0; i < contents.length; i++) {
            var name = (names && names[i]) || ("file " + (i + 1));
            var size = contents[i].length;
            if (kept.length >= maxFiles) {
                skipped.push([name, "not sent: at most " + maxFiles + " photos at a time"]);
            } else if (size * 0.75 > maxFile) {
                skipped.push([name, "not sent: over the " + Math.round(maxFile / 1048576) +
                              " MB limit per photo"]);
            } else if (total + size > maxChars) {
                skipped.push([name, "not sent: these photos together are over the request " +
                              "limit; drop it on its own"]);
            } else {
                kept.push(contents[i]); keptNames.push(name); total += size;
            }
        }
        return {contents: kept, names: keptNames, skipped: skipped};
    }
    """.replace("MAX_FILES", str(config.max_files()))
    # room for the rest of the callback's JSON
    .replace("MAX_CHARS", str(config.max_request_bytes() - 64 * 1024))
    .replace("MAX_FILE", str(inference.MAX_UPLOAD_BYTES)),
    Output("classify-uploads", "data"),
    Input("classify-upload", "contents"),
    State("classify-upload", "filename"),
)


@callback(
    Output("classify-run", "options"),
    Output("classify-run", "value"),
    Input("shell-runs", "value"),
    State("classify-run", "value"),
)
@tolerant
def run_choices(selected: list[str] | None, current: str | None):
    runs_dir = config.runs_dir()
    names = [s.name for s in list_runs(runs_dir) if model_epochs(runs_dir / s.name)]
    preferred = [r for r in (selected or []) if r in names]
    value = current if current in names else (preferred or names or [None])[0]
    return [{"label": n, "value": n} for n in names], value


@callback(
    Output("classify-epoch", "options"),
    Output("classify-epoch", "value"),
    Input("classify-run", "value"),
    Input("classify-interval", "n_intervals"),
    State("classify-epoch", "options"),
    State("classify-epoch", "value"),
)
@tolerant
def epoch_choices(run: str | None, _n: int | None, options: list | None, current: int | None):
    if not run:
        return [], None
    try:
        epochs = model_epochs(safe_run_dir(config.runs_dir(), run))
    except (ValueError, LookupError):
        return [], None
    new_options = [{"label": f"epoch {e}", "value": e} for e in epochs]
    run_changed = dash.ctx.triggered_id == "classify-run"
    if new_options == options and not run_changed:
        raise PreventUpdate  # polled, nothing new
    value = current if (current in epochs and not run_changed) else (epochs or [None])[-1]
    return new_options, value


@callback(
    Output("classify-results", "children"),
    Input("classify-uploads", "data"),
    Input("classify-epoch", "value"),
    State("classify-run", "value"),
)
@tolerant
def classify(uploads: dict | None, epoch: int | None, run: str | None):
    if not isinstance(uploads, dict):
        return html.P("No photos yet.", className="hint")
    contents = uploads.get("contents") or []
    skipped = [s for s in uploads.get("skipped") or [] if isinstance(s, list) and len(s) == 2]
    if not contents and not skipped:
        return html.P("No photos yet.", className="hint")
    if not run or epoch is None:
        return html.P("This run has no model yet.", className="error")
    try:
        run_dir = safe_run_dir(config.runs_dir(), run)
        if epoch not in model_epochs(run_dir):
            raise PreventUpdate  # the epoch picker is catching up with a run switch
        classifier = inference.Classifier.for_run(run_dir, epoch)
    except (ValueError, LookupError) as e:
        return html.P(f"Cannot use run {run} epoch {epoch}: {e}", className="error")
    try:
        results = classify_uploads(classifier, contents) if contents else []
    except inference.ImageError as e:  # busy, or a malformed request
        return html.P(f"Cannot classify now: {e}", className="error")
    names = uploads.get("names")
    if not isinstance(names, list) or len(names) != len(results):
        names = [f"file {i + 1}" for i in range(len(results))]
    info = runs.info(run_dir)
    notice = demo_notice(info.data) if info is not None else None
    cards = [result_card(str(n), r) for n, r in zip(names, results, strict=True)]
    cards += [result_card(str(n), {"error": str(why)}) for n, why in skipped]
    return [html.P(f"Run {run}, epoch {epoch}", className="classify-caption"), notice, *cards]
