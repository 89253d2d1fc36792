"""Image cards: a validation row with its thumbnail and top-5, and where thumbnails may come
from (the operator's allowed roots, $EPOCHSCOPE_DATA_ROOTS), for every view that shows them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dashboard import config
from epochscope import images
from epochscope.images import ImageSource
from epochscope.run import Run

__all__ = ["DrillImage", "ImageSource", "file_thumbnail", "row_thumbnail", "thumbnail_source"]


@dataclass(frozen=True)
class DrillImage:
    row: int
    path: str
    thumbnail: str | None  # data URI, None when the data root is unreachable or unsafe
    top5: list[tuple[int, str, float]]  # (class index, name, probability)


def thumbnail_source(run: Run, allowed: list[Path] | None = None) -> ImageSource:
    """Where the thumbnails of this run may come from (the allowed roots: EPOCHSCOPE_DATA_ROOTS
    unless given)."""
    return images.source(run, config.data_roots() if allowed is None else allowed)


def row_thumbnail(run: Run, row: int, root: Path | None, rel: str | None = None) -> str | None:
    """The data URI of validation row ``row``: its file under ``root`` (an allowed root, from
    :func:`thumbnail_source`), else the run's own thumbnails.bin (images as arrays)."""
    return images.row_thumbnail(run, row, root, rel)


def file_thumbnail(root: Path | None, rel: str) -> str | None:
    """The data URI of the image ``rel`` under ``root`` (an allowed root, from
    :func:`thumbnail_source`): a training image, which has no stored thumbnail."""
    path = images.safe_image_path(str(root), rel) if root is not None and rel else None
    return images.thumbnail_uri(path)


def image_cards(
    run: Run, epoch: int | None, rows: list[int], allowed: list[Path] | None = None
) -> list[DrillImage]:
    """Cards for ``rows``: thumbnail (from an allowed root only) and top-5 of the epoch's
    predictions (none when the epoch is None or has no predictions)."""
    root = thumbnail_source(run, allowed).root
    top5 = prob = None
    if epoch is not None and epoch in run.epochs:
        top5, prob = run.predictions(epoch)
    out = []
    for r in rows:
        r = int(r)
        guesses = (
            [(int(k), run.names[int(k)], float(p)) for k, p in zip(top5[r], prob[r], strict=True)]
            if top5 is not None and prob is not None
            else []
        )
        out.append(DrillImage(r, run.paths[r], row_thumbnail(run, r, root), guesses))
    return out
