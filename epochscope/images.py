"""Thumbnails of a run's validation images, for every view that shows them (the drill-down,
likely mislabeled images, the map, similar images).

They come only from places the dashboard's operator allowed: run.json's ``data.root``
when it lies inside one of the allowed roots (``--data-root`` / ``EPOCHSCOPE_DATA_ROOTS``,
default none) or inside the run directory itself, else the run directory's own
``thumbnails/`` folder. A run.json copied from elsewhere cannot point the dashboard at ``/``.
A path from val_index.tsv is used only when it resolves (symlinks followed) to a regular file
inside that root, and only photo formats are opened.
Runs whose validation images were arrays carry them in the run directory's thumbnails.bin
(read by row).
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from epochscope.preprocess import apply_draft
from epochscope.thumbnails import read_thumbnail

if TYPE_CHECKING:
    from epochscope.run import Run

MAX_IMAGE_BYTES = 20 << 20  # a larger "thumbnail" source is not worth reading in a callback
MAX_IMAGE_PIXELS = 64_000_000
THUMB_PX = 96
THUMB_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # data sets' formats; nothing exotic
RUN_THUMBNAILS = "thumbnails"  # <run>/thumbnails/<path from val_index.tsv>, when a run has them


@dataclass(frozen=True)
class ImageSource:
    """Where a run's drill-down thumbnails come from, and what to tell the user about it."""

    root: Path | None
    note: str | None = None


def _inside(path: Path, roots: list[Path]) -> bool:
    for root in roots:
        try:
            if path.is_relative_to(root.resolve()):
                return True
        except (OSError, RuntimeError, ValueError):
            continue
    return False


def image_source(
    run_dir: Path, data_root: str | os.PathLike[str] | None, allowed: list[Path]
) -> ImageSource:
    """The allowed root of a run's images: data.root inside an allowed root or the run
    directory, else the run's thumbnails/ folder, else none (with a note saying why)."""
    own = Path(run_dir) / RUN_THUMBNAILS
    fallback = None
    try:
        real_own = own.resolve(strict=True)
        # a thumbnails/ link that leads out of the run (to / say) is no source at all
        if real_own.is_dir() and real_own.is_relative_to(Path(run_dir).resolve(strict=True)):
            fallback = real_own
    except (OSError, RuntimeError, ValueError):
        pass
    if not data_root or not isinstance(data_root, str) or not os.path.isabs(data_root):
        return ImageSource(fallback)
    try:
        real = Path(data_root).resolve()
    except (OSError, RuntimeError, ValueError):
        return ImageSource(fallback)
    if _inside(real, [*allowed, Path(run_dir)]):
        return ImageSource(real)
    if fallback is not None:
        return ImageSource(fallback)
    return ImageSource(
        None,
        f"No thumbnails: this run's images are in {data_root}, which is not an allowed folder."
        " Start the dashboard with --data-root (or EPOCHSCOPE_DATA_ROOTS) naming it to see them.",
    )


def safe_image_path(data_root: str | os.PathLike[str] | None, rel: str) -> Path | None:
    """The file ``rel`` names under ``data_root``, or None when unsafe or not there.

    Refused: no or relative root, absolute or backslashed paths, ``..`` components, NUL bytes,
    and anything whose real path (after symlinks) leaves the root or is not a regular file.
    """
    if not data_root or not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return None
    if not os.path.isabs(data_root):
        return None
    parts = PurePosixPath(rel)
    if parts.is_absolute() or ".." in parts.parts or rel.startswith("~"):
        return None
    try:
        root = Path(data_root).resolve(strict=True)
        path = (root / Path(*parts.parts)).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not root.is_dir() or not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def thumbnail_uri(path: Path | None, size: int = THUMB_PX) -> str | None:
    """A small JPEG data URI of an image file, or None when it cannot be read."""
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError  # imported on use: epochscope needs no Pillow

    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        with Image.open(path, formats=THUMB_FORMATS) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                return None
            apply_draft(img, size)  # JPEG: decode at a reduced scale, much faster
            small = img.convert("RGB")
            small.thumbnail((size, size))
            # enlarge tiny images (32 px demo data) so they are visible; pixelated in CSS
            if max(small.size) < size:
                factor = size // max(small.size)
                if factor > 1:
                    small = small.resize(
                        (small.width * factor, small.height * factor), Image.Resampling.NEAREST
                    )
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=85)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def stored_thumbnail_uri(run_dir: str | os.PathLike[str], row: int) -> str | None:
    """The data URI of validation row ``row`` from the run's thumbnails.bin (a JPEG checked by
    its signature, sent as stored), or None when the run has none."""
    jpeg = read_thumbnail(run_dir, row)
    if jpeg is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def source(run: Run, allowed: list[Path]) -> ImageSource:
    """:func:`image_source` of a Run (its folder and run.json's data root)."""
    return image_source(run.path, run.data_root, allowed)


def row_thumbnail(run: Run, row: int, root: Path | None, rel: str | None = None) -> str | None:
    """The data URI of validation row ``row``: its file ``rel`` (default: val_index.tsv's path)
    under ``root`` (an allowed root, from :func:`source`), else the run's own thumbnails.bin."""
    rel = run.paths[row] if rel is None else rel
    path = safe_image_path(str(root), rel) if root is not None and rel else None
    return thumbnail_uri(path) or stored_thumbnail_uri(run.path, row)
