"""thumbnails.bin: small JPEGs of the validation images, in one file inside the run directory.

For validation sets that are arrays rather than files (Hugging Face datasets, tensors): the
drill-down then shows the images behind a confusion cell without reading outside RUNS. One file,
read by seeking to one image (never loaded whole), so 50,000 images cost one file of ~1-3 KB
each::

    b"ESTHUMB1"                 8 bytes, the format
    count                       uint64 little-endian: N images, rows of val_index.tsv
    offsets[N + 1]              uint64 little-endian, from the start of the data block
    data                        N JPEGs, concatenated; image i is data[offsets[i]:offsets[i+1]]

Pillow is imported only to encode.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from epochscope.layout import THUMBNAILS as FILE_NAME
from epochscope.layout import cap_of, check_size, open_regular

MAGIC = b"ESTHUMB1"
#: longest side of a stored thumbnail; smaller images are stored at their own size
MAX_SIDE = 64
QUALITY = 85
MAX_THUMB_BYTES = 1 << 20  # one entry larger than this is not a thumbnail


def as_images(images: object) -> np.ndarray:
    """Validation images as uint8 [N, H, W, 3]; [N, 3, H, W] and [N, H, W] are converted,
    floats in 0..1 scaled. ValueError (naming ``val_images``) for anything else."""
    from epochscope.gather import to_numpy

    a = to_numpy(images)
    if a.ndim == 3:  # greyscale
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 1, -1)  # NCHW -> NHWC
    if a.ndim == 4 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.ndim != 4 or a.shape[-1] != 3 or 0 in a.shape:
        raise ValueError(
            f"val_images as an array must be [N, H, W, 3] uint8 (or [N, 3, H, W]), "
            f"not {list(a.shape)}"
        )
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("val_images holds NaN or infinite values")
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        a = np.clip(np.rint(a * scale), 0, 255)
    elif not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
        raise ValueError(f"val_images must hold numbers, not {a.dtype}")
    return a.astype(np.uint8, copy=False)


def encode_jpeg(pixels: np.ndarray, max_side: int = MAX_SIDE) -> bytes:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def pack(jpegs: Iterable[bytes]) -> bytes:
    """The file's bytes for these JPEGs, in row order."""
    blobs = list(jpegs)
    offsets = np.zeros(len(blobs) + 1, dtype="<u8")
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return MAGIC + struct.pack("<Q", len(blobs)) + offsets.tobytes() + b"".join(blobs)


def thumbnails_bytes(images: np.ndarray, max_side: int = MAX_SIDE) -> bytes:
    """uint8 [N, H, W, 3] -> thumbnails.bin."""
    return pack(encode_jpeg(im, max_side) for im in images)


def read_thumbnail(run_dir: str | os.PathLike[str], row: int) -> bytes | None:
    """The JPEG bytes of validation row ``row``, or None when the run has no such thumbnail
    (no file, a row out of range, a damaged file)."""
    path = Path(run_dir) / FILE_NAME
    try:
        # the bounded reader: never a FIFO, a device or a link out of the run; capped size
        with os.fdopen(open_regular(path, within=run_dir), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            check_size(path, size, cap_of(path))
            head = f.read(16)
            if len(head) != 16 or head[:8] != MAGIC:
                return None
            (count,) = struct.unpack("<Q", head[8:])
            data_start = 16 + 8 * (count + 1)
            if not 0 <= row < count or data_start > size:
                return None
            f.seek(16 + 8 * row)
            start, stop = struct.unpack("<QQ", f.read(16))
            if not start <= stop <= size - data_start or stop - start > MAX_THUMB_BYTES:
                return None
            f.seek(data_start + start)
            blob = f.read(stop - start)
    except (OSError, struct.error, LookupError, ValueError):
        return None
    return blob if blob[:3] == b"\xff\xd8\xff" else None  # a JPEG, nothing else


def thumbnail_count(run_dir: str | os.PathLike[str]) -> int:
    """How many images thumbnails.bin holds (0 without a readable file)."""
    try:
        with os.fdopen(open_regular(Path(run_dir) / FILE_NAME, within=run_dir), "rb") as f:
            head = f.read(16)
    except (OSError, LookupError, ValueError):
        return 0
    if len(head) != 16 or head[:8] != MAGIC:
        return 0
    return struct.unpack("<Q", head[8:])[0]
