"""Classifier page (``/classify``): drop photos, see each one's top-5 at any epoch. The layout
and its callbacks; the pure pieces are in results.py."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate
from werkzeug.exceptions import RequestEntityTooLarge

from dashboard import config, inference, runs
from dashboard.classify.results import classify_uploads, demo_notice, result_card
from dashboard.kit import picker
from dashboard.kit import similar as similar_view
from dashboard.shell import tolerant


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
            # chosen runs the classifier cannot use: why, and how to give them a model
            html.Div(id="classify-why", className="classify-why"),
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


#: entries of the "skipped" list a request may hold (the browser sums up the rest in one)
MAX_SKIPPED = 32
#: characters of a file name or a reason the page shows
MAX_TEXT = 300


def bounded(uploads: Any) -> Any:
    """The classifier's request within its documented limits, or a 413 saying which one: at
    most EPOCHSCOPE_MAX_FILES photos and names, MAX_SKIPPED skipped files, MAX_TEXT
    characters per name or reason. Each entry makes a result card; without these limits a
    2 MB request made a 67 MB reply."""
    if not isinstance(uploads, dict):
        return uploads
    limits = {"contents": config.max_files(), "names": config.max_files(), "skipped": MAX_SKIPPED}
    for key, most in limits.items():
        value = uploads.get(key)
        if value is not None and not isinstance(value, list):
            raise RequestEntityTooLarge(f"the classifier's '{key}' must be a list")
        if value is not None and len(value) > most:
            raise RequestEntityTooLarge(
                f"the classifier takes at most {most} entries in '{key}', not {len(value)}"
            )
    texts = [*(uploads.get("names") or []), *(t for s in uploads.get("skipped") or [] for t in
                                              (s if isinstance(s, list) else [s]))]  # fmt: skip
    if any(not isinstance(t, str) or len(t) > MAX_TEXT for t in texts):
        raise RequestEntityTooLarge(
            f"the classifier's file names and reasons are strings of at most {MAX_TEXT} characters"
        )
    return uploads


# The browser keeps at most MAX_FILES photos whose base64 fits one request under the request
# limit, and names the ones it left out: the server would answer such a request with a 413.
clientside_callback(
    """
    function(contents, names) {
        if (!contents) { return window.dash_clientside.no_update; }
        var maxFiles = MAX_FILES, maxChars = MAX_CHARS, maxFile = MAX_FILE;
        var maxSkipped = MAX_SKIPPED;
        var kept = [], keptNames = [], skipped = [], total = 0;
        for (var i = 0; i < contents.length; i++) {
            if (skipped.length == maxSkipped - 1 && i < contents.length - 1) {
                skipped.push(["and " + (contents.length - i) + " more files",
                              "not sent: too many files at once"]);
                break;
            }
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
    .replace("MAX_SKIPPED", str(MAX_SKIPPED))
    # room for the rest of the callback's JSON
    .replace("MAX_CHARS", str(config.max_request_bytes() - 64 * 1024))
    .replace("MAX_FILE", str(inference.MAX_UPLOAD_BYTES)),
    Output("classify-uploads", "data"),
    Input("classify-upload", "contents"),
    State("classify-upload", "filename"),
)


picker.register("classify-run", having="models")


def why_no_model(run: str, state: str) -> str:
    """Why run ``run`` has no model for the classifier, and how to give it one."""
    info = runs.info(run)
    if info is None:
        return f"{run}: its run.json cannot be read, so it has no model to classify with."
    source = info.hparams.get("imported_from")
    if source == "tensorboard":
        return (
            f"{run} was imported from a TensorBoard log, which holds scalars but no model, so "
            "it cannot classify. To classify, log the model from your training code: "
            f"run = epochscope.init({run!r}, RUNS, classes=..., if_exists='resume') and "
            "run.log_model(epoch, model) for a new epoch (docs/api.md)."
        )
    if source == "timm":
        return (
            f"{run} was imported from timm without a checkpoint, so it has no model. Import it "
            "again with --checkpoint OUTPUT_DIR/model_best.pth.tar --val-dir VAL --name NEW "
            "(needs timm installed): the checkpoint is exported for the classifier."
        )
    if state == "running":
        return f"{run} has no model yet: the first is written at the end of its first epoch."
    if info.engine == "epochscope-api":
        return (
            f"{run} was logged without a model: call run.log_model(epoch, model) before "
            "run.log_epoch(epoch) (a torch module or ONNX bytes; docs/api.md). Integrations "
            "log it unless log_model=False."
        )
    return f"{run} has no model: no epoch of it finished with one."


@callback(
    Output("classify-why", "children"),
    Input("shell-runs", "value"),
    Input("classify-interval", "n_intervals"),
)
@tolerant
def models_missing(selected: list[str] | None, _n: int | None):
    provider = runs.provider()
    chosen = set(selected or [])
    notes = []
    for summary in provider.summaries():
        if summary.name not in chosen or provider.epochs(summary.name, "models"):
            continue
        notes.append(html.P(why_no_model(summary.name, summary.state), className="hint"))
    return notes


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
    epochs = runs.provider().epochs(run, "models")
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
def classify(uploads: dict | None, epoch: int | None, run: str | None):
    return _classify(bounded(uploads), epoch, run)  # a request over the limits: 413


@tolerant
def _classify(uploads: dict | None, epoch: int | None, run: str | None):
    if not isinstance(uploads, dict):
        return html.P("No photos yet.", className="hint")
    contents = uploads.get("contents") or []
    skipped = [s for s in uploads.get("skipped") or [] if isinstance(s, list) and len(s) == 2]
    if not contents and not skipped:
        return html.P("No photos yet.", className="hint")
    if not run or epoch is None:
        return html.P(
            "No chosen run has a model to classify with (why: above the photos).",
            className="error",
        )
    try:
        provider = runs.provider()
        provider.check(run)
        if epoch not in provider.epochs(run, "models"):
            raise PreventUpdate  # the epoch picker is catching up with a run switch
        opened = provider.run(run)
        classifier = inference.Classifier.for_run(opened, epoch)
    except (ValueError, LookupError) as e:
        return html.P(f"Cannot use run {run} epoch {epoch}: {e}", className="error")
    finder, why_not = similar_view.photo_finder(classifier, opened, epoch)
    try:
        results = classify_uploads(classifier, contents, similar_to=finder) if contents else []
    except inference.ImageError as e:  # busy, or a malformed request
        return html.P(f"Cannot classify now: {e}", className="error")
    names = uploads.get("names")
    if not isinstance(names, list) or len(names) != len(results):
        names = [f"file {i + 1}" for i in range(len(results))]
    info = opened.info_or_none
    notice = demo_notice(info.data) if info is not None else None
    cards = [result_card(str(n), r) for n, r in zip(names, results, strict=True)]
    cards += [result_card(str(n), {"error": str(why)}) for n, why in skipped]
    similar_note = html.P(why_not, className="hint classify-similar-note") if why_not else None
    caption = html.P(f"Run {run}, epoch {epoch}", className="classify-caption")
    return [caption, notice, similar_note, *cards]
