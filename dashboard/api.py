"""HTTP API under ``/api/v1``.

- ``POST /api/v1/classify`` (multipart ``image``, optional ``run`` and ``epoch``) answers
  ``{"run", "epoch", "file", "top5": [{index, wnid, name, probability}]}`` with the same limits
  and messages as the classifier page. The upload is parsed into memory only (werkzeug would
  otherwise spool files over 500 KB to a temporary file).
- ``POST /api/v1/similar?run=NAME&epoch=E&k=K`` (multipart ``image``; k 1..100, default 10):
  the k validation images nearest to the photo in the epoch's embedding space, a JSON list of
  ``{index, path, label, label_name, distance}``, closest first (:mod:`epochscope.similar`);
  409 when the run has no embeddings or the epoch's model no ``embedding`` output.
- ``GET /api/v1/label-issues?run=NAME&epoch=E&limit=N&method=M``: the validation images most
  likely mislabeled first, a JSON list of objects with ``Run.label_issues``' fields;
  ``split=train&first=F&last=L``: the training images instead (``Run.training_label_issues``'
  fields, over the training statistics of epochs F..L, default all).
- ``GET /api/v1/label-issues.csv?run=NAME&epoch=E&split=S&label=I&suggested=J``: the whole
  ranking of either split as a streamed CSV download (the page's "CSV of the whole ranking").
- ``GET /api/v1/calibration?run=NAME&epoch=E``: ``Run.calibration``'s dict, tables as lists of
  row objects.
- ``GET /api/v1/report?run=NAME&epoch=E&compare=NAME2&lite=1``: the run's offline HTML report
  (:func:`epochscope.report.build_report`) as a download, thumbnails from the data roots the
  server may read; one report at a time per worker (503 while one is written).

Errors are ``{"error": "..."}`` with a 4xx status. Every route sits behind the same access
checks (dashboard/access.py: token, peers, hosts, reply size).
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from flask import Flask, Response, jsonify, request, stream_with_context
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from dashboard import config, inference, runs
from epochscope import Runs, labels, similar, train_labels
from epochscope.analysis.label_issues import METHODS
from epochscope.embeddings import EMBEDDINGS_MISSING
from epochscope.run import Run

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and small fields around the file
#: rows one label-issues reply may hold (the dashboard's CSV export has them all)
MAX_ISSUES = 10_000
DEFAULT_ISSUES = 100
#: a report takes a worker thread for seconds (6.5 s at 1,000 classes): one at a time
REPORT_SLOT = threading.BoundedSemaphore(1)


class ApiError(Exception):
    """A request the API refuses: the message and the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _MemoryBuffer(io.BytesIO):
    """An in-memory upload that refuses to grow past the limit (also for chunked requests)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.limit:
            raise RequestEntityTooLarge()
        return super().write(data)


def _error(message: str, status: int):
    reply = jsonify({"error": message})
    reply.status_code = status
    if status == 503:
        reply.headers["Retry-After"] = "2"
    return reply


def default_run(provider: Runs) -> str | None:
    """The newest run that has a model."""
    for name in provider.names():
        if provider.epochs(name, "models"):
            return name
    return None


def classify_upload(data: bytes, run: str | None, epoch: str | int | None) -> dict[str, Any]:
    """Top-5 of one upload; raises inference.ImageError (status attached) for every failure."""
    provider = runs.provider()
    run = run or default_run(provider)
    if not run:
        raise inference.ImageError("no run with a model yet", 404)
    try:
        provider.check(run)
    except ValueError as e:
        raise inference.ImageError(str(e), 400) from None
    except LookupError as e:
        raise inference.ImageError(str(e), 404) from None
    epochs = provider.epochs(run, "models")
    if epoch in (None, ""):
        if not epochs:
            raise inference.ImageError(f"run {run!r} has no model yet", 404)
        epoch = epochs[-1]
    try:
        epoch = int(epoch)
    except (TypeError, ValueError):
        raise inference.ImageError(f"epoch must be a whole number, not {epoch!r}", 400) from None
    if epoch not in epochs:
        raise inference.ImageError(f"run {run!r} has no model for epoch {epoch}", 404)
    try:
        classifier = inference.Classifier.for_run(provider.run(run), epoch)
        result = classifier.classify([data])[0]
    except inference.ImageError:
        raise
    except (LookupError, ValueError, OSError) as e:  # also a model replaced or removed just now
        raise inference.ImageError(f"cannot use run {run!r} epoch {epoch}: {e}", 409) from None
    if isinstance(result, inference.ImageError):
        raise result
    return {"run": run, "epoch": epoch, "top5": result}


def _whole(name: str, value: str | None, default: int | None, low: int, high: int) -> int | None:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(f"{name} must be a whole number, not {value!r:.40}", 400) from None
    if not low <= number <= high:
        raise ApiError(f"{name} must be between {low} and {high:,}, not {number:,}", 400)
    return number


def run_and_epoch(run: str | None, epoch: str | None) -> tuple[Run, int]:
    """The Run (through the worker's RunCache) and epoch a label request names: the newest
    run with predictions and its last epoch by default; ApiError 400/404 otherwise."""
    provider = runs.provider()
    if not run:
        names = provider.names(having="predictions")
        if not names:
            raise ApiError("no run with predictions yet", 404)
        run = names[0]
    try:
        opened = provider.run(run)
    except ValueError as e:
        raise ApiError(str(e), 400) from None
    except LookupError as e:
        raise ApiError(str(e), 404) from None
    if not opened.epochs:
        raise ApiError(f"run {run!r} has no predictions yet", 404)
    e = _whole("epoch", epoch, opened.epochs[-1], 0, 10**9)
    if e not in opened.epochs:
        raise ApiError(f"run {run!r} has no predictions for epoch {e}", 404)
    return opened, int(e)  # type: ignore[arg-type]


def _json(obj: Any, run: Run, epoch: int) -> Response:
    # plain json.dumps: keys in the documented order (Flask's provider sorts them)
    reply = Response(json.dumps(obj, allow_nan=False), mimetype="application/json")
    reply.headers["Epochscope-Run"] = run.name
    reply.headers["Epochscope-Epoch"] = str(epoch)
    return reply


def _label_answer(compute: Any) -> Any:
    """Run a label view's computation, mapping what a run can lack to 4xx answers."""
    try:
        return compute()
    except ApiError as e:
        return _error(str(e), e.status)
    except (labels.LabelStatsMissing, train_labels.TrainStatsMissing) as e:  # not recorded
        return _error(str(e), 409)
    except LookupError as e:  # a file removed since the run was opened
        return _error(str(e), 404)
    except (ValueError, OSError) as e:  # a damaged predictions file
        return _error(f"cannot read this epoch: {e}", 409)


def label_issues_reply(args: Any) -> Response:
    """``GET /api/v1/label-issues``' answer for query arguments ``args``."""
    split = args.get("split") or "val"
    if split == "train":
        return train_issues_reply(args)
    if split != "val":
        raise ApiError(f"split must be val or train, not {split!r:.40}", 400)
    opened, epoch = run_and_epoch(args.get("run"), args.get("epoch"))
    limit = _whole("limit", args.get("limit"), DEFAULT_ISSUES, 1, MAX_ISSUES)
    method = args.get("method") or "self_confidence"
    if method not in METHODS:
        raise ApiError(f"method must be one of {', '.join(METHODS)}, not {method!r:.40}", 400)
    cols = labels.issue_columns(opened, epoch, limit=limit, method=method)
    return _json(labels.records(cols), opened, epoch)


def train_issues_reply(args: Any) -> Response:
    """``GET /api/v1/label-issues?split=train``: the training images most likely mislabeled
    first, from the training statistics of epochs ``first..last`` (default: all)."""
    opened, last = run_and_epoch(args.get("run"), args.get("last") or args.get("epoch"))
    first = _whole("first", args.get("first"), None, 1, last)
    limit = _whole("limit", args.get("limit"), DEFAULT_ISSUES, 1, MAX_ISSUES)
    epochs = train_labels.epoch_range(opened, first, last)
    cols = train_labels.issue_columns(opened, epochs[0], epochs[-1], limit=limit)
    return _json(labels.records(cols), opened, epochs[-1])


def issues_csv_reply(args: Any) -> Response:
    """``GET /api/v1/label-issues.csv``: the whole ranking as a CSV download, streamed in
    chunks (1.28 M training rows are ~180 MB: over a callback's reply limit, and too many to
    hold as lists), with ``split``, ``label`` and ``suggested`` as the page's filters."""
    split = args.get("split") or "val"
    if split not in ("val", "train"):
        raise ApiError(f"split must be val or train, not {split!r:.40}", 400)
    opened, epoch = run_and_epoch(args.get("run"), args.get("epoch"))
    how = {
        "label": _whole("label", args.get("label"), None, 0, opened.num_classes - 1),
        "suggested": _whole("suggested", args.get("suggested"), None, 0, opened.num_classes - 1),
    }
    if split == "train":
        chunks = train_labels.issue_chunks(opened, None, epoch, **how)
    else:
        method = args.get("method") or "self_confidence"
        if method not in METHODS:
            raise ApiError(f"method must be one of {', '.join(METHODS)}", 400)
        chunks = iter([labels.issue_columns(opened, epoch, method=method, **how)])
    # the first chunk now: a run without statistics or a damaged file answers 4xx, not a
    # download cut short
    first = next(chunks, None)

    def body():
        empty = {name: [] for name in train_labels.ISSUE_COLUMNS}  # a filter matched none
        yield labels.csv_text(first if first is not None else empty)
        for cols in chunks:
            yield labels.csv_text(cols, header=False)

    part = "".join(f"-{k}{v}" for k, v in how.items() if v is not None)
    which = "-train" if split == "train" else ""
    name = f"{opened.name}-epoch{epoch:04d}{which}-label-issues{part}.csv"
    reply = Response(stream_with_context(body()), mimetype="text/csv")
    reply.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return reply


def calibration_reply(args: Any) -> Response:
    """``GET /api/v1/calibration``' answer for query arguments ``args``."""
    opened, epoch = run_and_epoch(args.get("run"), args.get("epoch"))
    body = {
        "run": opened.name,
        **labels.calibration_json(labels.calibration_columns(opened, epoch)),
    }
    return _json(body, opened, epoch)


def report_reply(args: Any) -> Response:
    """``GET /api/v1/report``' answer: the HTML of the run (and epoch) the query names."""
    from epochscope.report import ReportError, build_report  # Pillow, plotly: on first use

    opened, epoch = run_and_epoch(args.get("run"), args.get("epoch"))
    compare = None
    if args.get("compare"):
        try:
            compare = runs.provider().run(args["compare"])
        except ValueError as e:
            raise ApiError(str(e), 400) from None
        except LookupError as e:
            raise ApiError(str(e), 404) from None
    if not REPORT_SLOT.acquire(blocking=False):
        raise ApiError("another report is being written by this worker; try again shortly", 503)
    try:
        html = build_report(opened, epoch, compare, lite=args.get("lite") in ("1", "true"),
                            data_roots=config.data_roots())  # fmt: skip
    except ReportError as e:  # e.g. the compared run has other classes
        raise ApiError(str(e).replace("--compare", "compare"), 409) from None
    finally:
        REPORT_SLOT.release()
    reply = Response(html, mimetype="text/html")
    name = f"{opened.name}-epoch-{epoch}.html"  # run names are checked: no quote, no slash
    reply.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    reply.headers["Epochscope-Run"] = opened.name
    reply.headers["Epochscope-Epoch"] = str(epoch)
    return reply


def similar_upload(
    data: bytes, run: str | None, epoch: str | int | None, k: str | int | None = None
) -> list[dict[str, Any]]:
    """The k validation images nearest to one upload; raises inference.ImageError (status
    attached) for every failure: 409 when the run or its epoch has no embeddings, or the
    epoch's model no embedding output."""
    provider = runs.provider()
    run = run or default_run(provider)
    if not run:
        raise inference.ImageError("no run with a model yet", 404)
    try:
        wanted = None if epoch in (None, "") else int(epoch)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise inference.ImageError(f"epoch must be a whole number, not {epoch!r}", 400) from None
    try:
        provider.check(run)
        count = similar.check_k(10 if k in (None, "") else k)
    except ValueError as e:
        raise inference.ImageError(str(e), 400) from None
    except LookupError as e:
        raise inference.ImageError(str(e), 404) from None
    try:
        view = provider.run(run)
    except (LookupError, ValueError, OSError) as e:
        raise inference.ImageError(f"cannot use run {run!r}: {e}", 409) from None
    if wanted is not None and wanted not in view.model_epochs + view.embedding_epochs:
        raise inference.ImageError(f"run {run!r} has no model for epoch {wanted}", 404)
    try:
        chosen = similar.search_epoch(view, wanted, need_model=True)
        classifier = inference.Classifier.for_run(view, chosen)
        if not classifier.has_embedding:
            message = similar.NO_EMBEDDING_OUTPUT.format(epoch=chosen)
            raise inference.ImageError(f"{message}: {EMBEDDINGS_MISSING}", 409)
        tensor = inference.decode_for_model(data, classifier.pre)[0]
        features = classifier.features(tensor[None])[0]
        return similar.neighbours(view, chosen, similar.embedding_of(view, chosen, features), count)
    except inference.ImageError:
        raise
    except (LookupError, ValueError, OSError) as e:  # also files replaced or removed just now
        raise inference.ImageError(f"cannot use run {run!r}: {e}", 409) from None


def register(server: Flask) -> None:
    """Add the API routes to the Flask server under Dash."""

    @server.get("/api/v1/label-issues")
    def label_issues():  # the Flask view
        return _label_answer(lambda: label_issues_reply(request.args))

    @server.get("/api/v1/label-issues.csv")
    def label_issues_csv():  # the Flask view
        return _label_answer(lambda: issues_csv_reply(request.args))

    @server.get("/api/v1/calibration")
    def calibration():  # the Flask view
        return _label_answer(lambda: calibration_reply(request.args))

    @server.get("/api/v1/report")
    def report():  # the Flask view
        return _label_answer(lambda: report_reply(request.args))

    @server.post("/api/v1/classify")
    def classify():  # the Flask view
        return _upload_view(similar_form=False)

    @server.post("/api/v1/similar")
    def similar_images():  # the Flask view
        return _upload_view(similar_form=True)


def _upload_view(similar_form: bool):
    """A photo upload's answer: size and type checked before anything is read."""
    limit = inference.MAX_UPLOAD_BYTES
    length = request.content_length
    if length is not None and length > limit + FORM_OVERHEAD:
        return _error(f"the upload is over the {limit / 2**20:.0f} MB limit", 413)
    if not (request.mimetype or "").startswith("multipart/form-data"):
        return _error("send multipart/form-data with the photo in the field 'image'", 415)
    try:
        # the slot first: a busy worker answers 503 before reading 20 MB it cannot decode
        with inference.DECODES.slot():
            return _classify_form(limit, similar_form)
    except inference.ImageError as e:
        return _error(str(e), e.status)


def _classify_form(limit: int, similar_form: bool = False):
    try:
        _, form, files = parse_form_data(
            request.environ,
            stream_factory=lambda *a, **k: _MemoryBuffer(limit + 1),
            max_content_length=limit + FORM_OVERHEAD,
        )
    except RequestEntityTooLarge:
        return _error(f"the upload is over the {limit / 2**20:.0f} MB limit", 413)
    upload = files.get("image")
    if upload is None:
        return _error("no file in the form field 'image'", 400)
    run = form.get("run") or request.args.get("run")
    epoch = form.get("epoch") or request.args.get("epoch")
    try:
        data = upload.stream.getvalue()
        if similar_form:
            k = form.get("k") or request.args.get("k")
            return jsonify(similar_upload(data, run, epoch, k))
        answer = classify_upload(data, run, epoch)
    except inference.ImageError as e:
        return _error(f"{upload.filename or 'image'}: {e}", e.status)
    return jsonify({**answer, "file": upload.filename})
