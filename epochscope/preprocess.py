"""The one image preprocessing: what trainer evaluation, ``trainer predict`` and the dashboard's
uploads all do to a photo before the model (run.json's ``preprocess``).

open (JPEG draft decode at ``resize_size``) -> upright (EXIF) -> 8-bit RGB -> shorter side to
``resize_size`` -> centre crop ``image_size`` -> uint8 HWC; :func:`normalize` then makes the
model's float32 CHW. Needs Pillow, imported on first use so that ``import epochscope`` does not.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from epochscope.records import Preprocess

if TYPE_CHECKING:
    from PIL import Image

#: rows converted at a time from 16-bit or float images (bounded memory, not a float64 copy)
_STRIP_ROWS = 512
#: a side longer than this many times the other is cut to its centre before resizing
LONG_SIDE_RATIO = 4


def _pil():
    from PIL import Image

    return Image


def resample(name: str) -> Any:
    """Pillow's resampling filter for run.json's ``interpolation`` name."""
    return getattr(_pil().Resampling, name.upper())


def draft_size(pre: Preprocess) -> int | None:
    """The side a JPEG is draft-decoded to cover (None: full-scale decode)."""
    return pre.resize_size if pre.jpeg_draft else None


def apply_draft(im: Image.Image, size: int | None) -> None:
    """Let a JPEG decode at the smallest 1/2..1/8 scale whose sides still cover ``size``."""
    if size and im.format in ("JPEG", "MPO") and im.mode in ("RGB", "L", "CMYK"):
        im.draft("RGB", (size, size))


def upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; broken EXIF keeps the image as it is."""
    from PIL import ImageOps

    with contextlib.suppress(Exception):
        return ImageOps.exif_transpose(im)
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency over white, 16-bit scaled down, not clipped."""
    Image = _pil()
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        src = np.asarray(im)
        peak = float(src.max(initial=0))
        # 16-bit and integer images span 0..65535; float images 0..1 or 0..255
        scale = 1 / 257.0 if (im.mode != "F" or peak > 255) else (255.0 if peak <= 1.0 else 1.0)
        out = np.empty(src.shape, dtype=np.uint8)
        for r in range(0, src.shape[0], _STRIP_ROWS):
            strip = src[r : r + _STRIP_ROWS].astype(np.float32) * scale
            out[r : r + _STRIP_ROWS] = np.clip(np.rint(strip), 0, 255)
        return Image.fromarray(out, "L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def open_rgb(source: str | os.PathLike[str] | IO[bytes], pre: Preprocess) -> Image.Image:
    """Decode a file (path or binary file object) as upright 8-bit RGB, draft-decoded."""
    with _pil().open(source) as im:
        apply_draft(im, draft_size(pre))
        im.load()
        return to_rgb(upright(im))


def trim_long_side(im: Image.Image, ratio: int = LONG_SIDE_RATIO) -> Image.Image:
    """Crop a very long image to its centre before resizing (the centre crop keeps only that):
    a 1 x 60,000,000 strip would otherwise be resized to 36 x 2 billion pixels."""
    w, h = im.size
    if max(w, h) <= ratio * min(w, h):
        return im
    keep = ratio * min(w, h)
    if w > h:
        left = (w - keep) // 2
        return im.crop((left, 0, left + keep, h))
    top = (h - keep) // 2
    return im.crop((0, top, w, top + keep))


def resize_crop(im: Image.Image, pre: Preprocess) -> np.ndarray:
    """RGB image -> uint8 [S, S, 3]: shorter side to resize_size, centre crop image_size."""
    im = trim_long_side(im)
    w, h = im.size
    scale = pre.resize_size / min(w, h)
    size = (max(pre.resize_size, round(w * scale)), max(pre.resize_size, round(h * scale)))
    if size != (w, h):
        im = im.resize(size, resample(pre.interpolation))
    s = pre.image_size
    x, y = (size[0] - s) // 2, (size[1] - s) // 2
    return np.asarray(im.crop((x, y, x + s, y + s)), dtype=np.uint8)


def normalize(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 [..., S, S, 3] -> float32 [..., 3, S, S]: 0..1, minus mean, over std."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def prepare(im: Image.Image, pre: Preprocess) -> np.ndarray:
    """A decoded RGB image as the exported model wants it: float32 [3, S, S]."""
    return normalize(resize_crop(im, pre), pre)


def preprocess(source: str | os.PathLike[str] | IO[bytes], pre: Preprocess) -> np.ndarray:
    """One image file as the exported model wants it: float32 [3, S, S]."""
    return prepare(open_rgb(source, pre), pre)
