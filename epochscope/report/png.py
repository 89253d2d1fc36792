"""RGB arrays as PNG data URIs (Pillow, imported on use)."""

from __future__ import annotations

import base64
import io

import numpy as np


def png_bytes(rgb: np.ndarray) -> bytes:
    """uint8 [H, W, 3] (or [H, W]) as PNG bytes, without colour profile or metadata."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        buf, format="PNG", optimize=False, compress_level=9
    )
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def png_uri(rgb: np.ndarray) -> str:
    return data_uri(png_bytes(rgb))
