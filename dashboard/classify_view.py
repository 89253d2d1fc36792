"""Pure pieces of the classifier page: decode uploads, classify them, lay out the results."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from dash import html

from dashboard import inference
from epochscope.preprocess import draft_size
from epochscope.records import DataInfo
from trainer.presets import is_synthetic_dataset  # framework-free: json and pathlib only

try:  # the ImageNet catalogue gives the WordNet path of a predicted class
    from assets.catalogue import load_catalogue
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
    classifier: inference.Classifier, contents: list[str], max_bytes: int | None = None
) -> list[dict[str, Any]]:
    """Per upload: {"thumb": data URL or None, "top5": [...]} or {"error": message}."""
    decoded: list[Any] = []
    thumbs: list[str | None] = []
    draft = draft_size(classifier.pre)
    for content in contents:
        try:
            data = data_url_bytes(content)
            # decoded exactly as the trainer evaluates, so the page agrees with validation
            im = inference.decode_image(data, max_bytes=max_bytes, draft_px=draft)
            thumb = im
            if draft and min(im.size) < THUMB_SIZE:  # a small model: a sharper thumbnail
                thumb = inference.decode_image(data, max_bytes=max_bytes, draft_px=THUMB_SIZE)
            thumbs.append(
                "data:image/jpeg;base64,"
                + base64.b64encode(inference.thumbnail_jpeg(thumb, THUMB_SIZE)).decode("ascii")
            )
            decoded.append(im)
        except inference.ImageError as e:
            thumbs.append(None)
            decoded.append(e)
    results = classifier.classify_images(decoded)
    out = []
    for thumb, result in zip(thumbs, results, strict=True):
        if isinstance(result, inference.ImageError):
            out.append({"thumb": None, "error": str(result)})
        else:
            out.append({"thumb": thumb, "top5": result})
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
        ],
        className="classify-card",
    )


def trained_on_synthetic(data: DataInfo) -> bool:
    """Whether run.json says the run learnt from the synthetic demo data: ``data.synthetic``,
    or, for runs written before that key, a demo.json marker under ``data.root``."""
    if data.synthetic is not None:
        return data.synthetic
    return bool(data.root) and is_synthetic_dataset(data.root)


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
