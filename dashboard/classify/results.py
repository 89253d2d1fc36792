"""Pure pieces of the classifier page: decode uploads, classify them, lay out the results."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import numpy as np
from dash import html

from dashboard import config, inference
from dashboard.kit.similar import strip
from epochscope.records import DataInfo

try:  # the ImageNet catalogue gives the WordNet path of a predicted class
    from epochscope.catalogue import load_catalogue
except ImportError:  # pragma: no cover - the package is part of this repository
    load_catalogue = None


def data_url_bytes(content: str) -> bytes:
    """'data:image/jpeg;base64,....' (what dcc.Upload gives) -> the file's bytes."""
    _, _, payload = content.partition(",")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise inference.ImageError("the upload could not be read (bad base64)", 400) from None


def wordnet_path(wnid: str) -> list[str]:
    """Readable names from the class up to 'entity', or [] when not an ImageNet class."""
    if load_catalogue is None:
        return []
    cat = load_catalogue()
    if wnid not in cat:
        return []
    return [cat.synset_name(w) for w in cat.path_to_root(wnid)]


THUMB_SIZE = 160


def classify_uploads(
    classifier: inference.Classifier,
    contents: list[str],
    max_bytes: int | None = None,
    max_files: int | None = None,
    similar_to: Callable[[np.ndarray], list[list[dict[str, Any]]]] | None = None,
) -> list[dict[str, Any]]:
    """Per upload: {"thumb": data URL or None, "top5": [...]} or {"error": message}; with
    ``similar_to`` (model inputs -> each one's nearest validation images) also "neighbours".

    At most ``max_files`` (EPOCHSCOPE_MAX_FILES) are classified, the rest get an error; the
    batch holds one decode slot, and each photo is decoded (exactly as the trainer evaluates)
    straight to the model's input and a thumbnail, so one decoded photo is in memory at a time.
    """
    limit = config.max_files() if max_files is None else max_files
    if not isinstance(contents, list):
        raise inference.ImageError("the uploads are not a list", 400)
    tensors: list[Any] = []
    thumbs: list[str | None] = []
    with inference.DECODES.slot():
        for n, content in enumerate(contents):
            try:
                if n >= limit:
                    raise inference.ImageError(
                        f"not classified: at most {limit} photos per request "
                        "(EPOCHSCOPE_MAX_FILES)",
                        413,
                    )
                if not isinstance(content, str):
                    raise inference.ImageError("the upload could not be read (not a data URL)", 400)
                tensor, thumb = inference.decode_for_model(
                    data_url_bytes(content), classifier.pre, max_bytes, thumb_px=THUMB_SIZE
                )
                thumbs.append("data:image/jpeg;base64," + base64.b64encode(thumb).decode("ascii"))
                tensors.append(tensor)
            except inference.ImageError as e:
                thumbs.append(None)
                tensors.append(e)
    results = classifier.classify_tensors(tensors)
    out = []
    for thumb, result in zip(thumbs, results, strict=True):
        if isinstance(result, inference.ImageError):
            out.append({"thumb": None, "error": str(result)})
        else:
            out.append({"thumb": thumb, "top5": result})
    where = [n for n, t in enumerate(tensors) if not isinstance(t, inference.ImageError)]
    if similar_to is not None and where:
        found = similar_to(np.stack([tensors[n] for n in where]))
        for n, items in zip(where, found, strict=True):
            out[n]["neighbours"] = items
    return out


def percent(p: float) -> str:
    """0.4567 -> '45.7%'; small values keep two significant digits instead of '0.0%'."""
    pct = 100.0 * p
    return f"{pct:.1f}%" if pct >= 0.1 or pct == 0 else f"{pct:.2g}%"


def result_card(filename: str, result: dict[str, Any]) -> html.Div:
    """Thumbnail, top-5 bars in percent (name and wnid), and the top-1's WordNet path."""
    head = html.Div(filename, className="classify-filename")
    if "error" in result:
        return html.Div(
            [head, html.Div(f"Cannot classify: {result['error']}", className="classify-error")],
            className="classify-card classify-card-error",
        )
    rows = []
    for r in result["top5"]:
        pct = 100.0 * r["probability"]
        rows.append(
            html.Div(
                [
                    html.Span([r["name"], html.Small(f" {r['wnid']}")], className="classify-label"),
                    html.Div(
                        html.Div(className="classify-bar-fill", style={"width": f"{pct:.1f}%"}),
                        className="classify-bar",
                    ),
                    html.Span(
                        percent(r["probability"]),
                        title=f"{r['probability']:.6g}",  # the exact value on hover
                        className="classify-pct",
                    ),
                ],
                className="classify-row",
            )
        )
    path = wordnet_path(result["top5"][0]["wnid"])
    neighbours = result.get("neighbours")
    return html.Div(
        [
            html.Img(src=result["thumb"], className="classify-thumb", alt=filename),
            html.Div(
                [
                    head,
                    html.Div(rows, className="classify-top5"),
                    html.Div("WordNet: " + " › ".join(path), className="classify-wordnet")
                    if path
                    else None,
                ],
                className="classify-body",
            ),
            strip(neighbours, "Most similar validation images (cosine distance)")
            if neighbours
            else None,
        ],
        className="classify-card",
    )


def trained_on_synthetic(data: DataInfo) -> bool:
    """Whether run.json says the run learnt from the synthetic demo data: ``data.synthetic``,
    or, for runs written before that key, a demo.json marker under ``data.root``."""
    return data.is_synthetic


DEMO_NOTICE = (
    "This run was trained on Epochscope's synthetic demo data: procedurally drawn shapes, "
    "one look per ImageNet class, not photos. The model has never seen a photo, so its labels "
    "for a real one mean nothing. To classify real photos, train on ImageNet "
    "(python -m trainer train --data /data/imagenet ...) and choose that run."
)


def demo_notice(data: DataInfo) -> html.Div | None:
    if not trained_on_synthetic(data):
        return None
    return html.Div(
        [html.B("Synthetic demo model. "), DEMO_NOTICE], id="classify-demo-notice",
        className="demo-notice",
    )  # fmt: skip
