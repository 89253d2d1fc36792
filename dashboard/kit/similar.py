"""Similar validation images on the classifier page and in the drill-down: finding them
(:mod:`epochscope.similar`, the same search as ``POST /api/v1/similar`` and ``Run.similar``) and
the strip of thumbnails that shows them. Thumbnails come from the drill-down's allowed sources
(:func:`dashboard.kit.images.row_thumbnail`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from dash import html

from dashboard import inference
from dashboard.kit.images import row_thumbnail, thumbnail_source
from epochscope import similar
from epochscope.embeddings import EMBEDDINGS_MISSING
from epochscope.run import Run

#: neighbours shown per photo or image
K = 8
THUMB_PX = 72

Finder = Callable[[np.ndarray], list[list[dict[str, Any]]]]


def photo_finder(
    classifier: inference.Classifier, run: Run, epoch: int, k: int = K
) -> tuple[Finder | None, str | None]:
    """(a function: model inputs [N, 3, S, S] -> each photo's k neighbours with thumbnails,
    None when the epoch cannot place photos) and the note saying why not."""
    if epoch not in run.embedding_epochs:
        return None, f"No similar images for epoch {epoch}: {EMBEDDINGS_MISSING}."
    if not classifier.has_embedding:
        return None, f"No similar images: {similar.NO_EMBEDDING_OUTPUT.format(epoch=epoch)}."
    root = thumbnail_source(run).root

    def find(batch: np.ndarray) -> list[list[dict[str, Any]]]:
        features = classifier.features(batch)
        found = [similar.neighbours(run, epoch, similar.embedding_of(run, epoch, f), k)
                 for f in features]  # fmt: skip
        return [with_thumbnails(run, items, root) for items in found]

    return find, None


def with_thumbnails(run: Run, items: list[dict[str, Any]], root: Any) -> list[dict[str, Any]]:
    return [{**item, "thumb": row_thumbnail(run, item["index"], root)} for item in items]


def row_neighbours(run: Run, epoch: int, row: int, k: int = K) -> tuple[int, list[dict[str, Any]]]:
    """(the epoch searched, validation row ``row``'s k neighbours with thumbnails): the epoch's
    embeddings, else the newest (a keep policy may have pruned the epoch's); LookupError when
    the run has none."""
    e = similar.search_epoch(run, epoch if epoch in run.embedding_epochs else None, False)
    items = similar.neighbours(run, e, row, k)
    return e, with_thumbnails(run, items, thumbnail_source(run).root)


def strip(items: list[dict[str, Any]], title: str, element_id: str | None = None) -> html.Div:
    """A row of neighbour thumbnails, closest first: image, label name, cosine distance."""
    cells = []
    for item in items:
        image = (
            html.Img(src=item["thumb"], className="similar-thumb", alt=item["path"])
            if item.get("thumb")
            else html.Div("no image", className="similar-thumb similar-missing")
        )
        cells.append(
            html.Div(
                [
                    image,
                    html.Div(item["label_name"], className="similar-label"),
                    html.Div(f"{item['distance']:.3f}", className="similar-distance"),
                ],
                className="similar-item",
                title=f"#{item['index']} {item['path']} · {item['label_name']} · "
                f"cosine distance {item['distance']:.4f}",
            )
        )
    head = html.Div(title, className="similar-title")
    kw = {"id": element_id} if element_id else {}
    return html.Div([head, html.Div(cells, className="similar-items")], className="similar", **kw)
