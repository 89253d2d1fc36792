"""Classify uploaded photos with a run's ONNX model (onnxruntime; no training framework).

Everything happens in memory: uploads are decoded from bytes and never written to disk. Each
failure is an ``ImageError`` whose message can be shown beside that file as it is.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from dashboard.rundir import model_path, read_classes, read_run_info

try:  # HEIC/HEIF photos from phones; optional, a light wheel
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - depends on the environment
    pillow_heif = None

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated upload is an error, not grey pixels


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


#: uploads over this many bytes are refused (EPOCHSCOPE_MAX_UPLOAD_MB, default 20)
MAX_UPLOAD_BYTES = int(_env_number("EPOCHSCOPE_MAX_UPLOAD_MB", 20) * 1024 * 1024)
#: images over this many pixels are refused before decoding (EPOCHSCOPE_MAX_MEGAPIXELS)
MAX_PIXELS = int(_env_number("EPOCHSCOPE_MAX_MEGAPIXELS", 64) * 1_000_000)
SESSION_CACHE_SIZE = int(_env_number("EPOCHSCOPE_MODEL_CACHE", 4))

# Pillow's own guard warns at MAX_IMAGE_PIXELS and raises at twice that; our explicit check
# below comes first with a clearer message, this is the backstop.
Image.MAX_IMAGE_PIXELS = max(MAX_PIXELS, 1)

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


#: what uploads may be: photo formats; the first frame of an animated GIF/WebP/PNG is classified
Image.init()  # every plugin registered, so the list below names only formats this Pillow has
_PHOTOS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
PHOTO_FORMATS = tuple(f for f in _PHOTOS if f in Image.OPEN)

BOMB_MESSAGE = "the image has too many pixels: over the {limit:.0f} megapixel limit"


class ImageError(ValueError):
    """A problem with one upload; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 415) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Preprocess:
    image_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_name: str = "input"
    output: str = "logits"

    @classmethod
    def from_run_info(cls, info: dict[str, Any]) -> Preprocess:
        p = info.get("preprocess")
        if not isinstance(p, dict):
            raise ValueError("run.json has no 'preprocess' section")
        try:
            pre = cls(
                image_size=int(p["image_size"]),
                resize_size=int(p.get("resize_size", p["image_size"])),
                interpolation=str(p.get("interpolation", "bilinear")).lower(),
                mean=tuple(float(x) for x in p["mean"]),
                std=tuple(float(x) for x in p["std"]),
                input_name=str(p.get("input_name", "input")),
                output=str(p.get("output", "logits")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"run.json 'preprocess' is incomplete: {e}") from None
        if pre.interpolation not in RESAMPLE:
            raise ValueError(f"run.json: unknown interpolation {pre.interpolation!r}")
        if len(pre.mean) != 3 or len(pre.std) != 3 or min(pre.std) <= 0:
            raise ValueError("run.json: mean and std need three values, std above 0")
        if not 1 <= pre.image_size <= pre.resize_size:
            raise ValueError("run.json: need 1 <= image_size <= resize_size")
        return pre


# --- decoding ----------------------------------------------------------------------------------
def decode_image(
    data: bytes,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    draft_size: int | None = None,
) -> Image.Image:
    """Bytes of a photo -> upright 8-bit RGB image, or an ImageError saying what is wrong."""
    max_bytes = MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if len(data) == 0:
        raise ImageError("the file is empty", 400)
    if len(data) > max_bytes:
        raise ImageError(
            f"the file is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit",
            413,
        )
    try:
        # lazy: reads the header only; photo formats only (no EPS, which would run Ghostscript)
        im = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
    except UnidentifiedImageError:
        raise ImageError("not an image, or an image format that cannot be read") from None
    except Image.DecompressionBombError:
        raise ImageError(BOMB_MESSAGE.format(limit=max_pixels / 1e6), 413) from None
    except Exception as e:  # a damaged header can raise nearly anything inside a plugin
        raise ImageError(f"the image is truncated or damaged ({_short(e)})", 422) from None
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(f"the image is {width} x {height} pixels: nothing to classify", 422)
    if width * height > max_pixels:
        raise ImageError(
            f"the image is {width} x {height} = {width * height / 1e6:.0f} megapixels, "
            f"over the {max_pixels / 1e6:.0f} megapixel limit",
            413,
        )
    try:
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))  # decode a big JPEG at a lower scale
        im.load()
    except Image.DecompressionBombError:
        raise ImageError(BOMB_MESSAGE.format(limit=max_pixels / 1e6), 413) from None
    except MemoryError:
        raise ImageError("the image is too large to decode", 413) from None
    except Exception as e:  # struct.error, IndexError, ... from damaged data
        raise ImageError(f"the image is truncated or damaged ({_short(e)})", 422) from None
    with contextlib.suppress(Exception):  # broken EXIF must not lose the photo: keep it unrotated
        im = ImageOps.exif_transpose(im)
    try:
        return to_rgb(im)
    except Exception as e:  # an odd mode or palette that cannot become RGB
        raise ImageError(f"the image cannot be converted to RGB ({_short(e)})", 422) from None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:200] if text else "") or type(e).__name__


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency over white, 16-bit scaled down, not clipped."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode != "F" or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 0..65535 -> 0..255
        elif arr.max(initial=0) <= 1.0:
            arr = arr * 255.0  # float images in 0..1
        gray = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def preprocess_image(im: Image.Image, pre: Preprocess) -> np.ndarray:
    """RGB image -> float32 [3, S, S]: shorter side to resize_size, centre crop, normalise."""
    im = _trim_long_side(im)
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = max(1, int(pre.resize_size * long / short))
    size = (pre.resize_size, new_long) if w <= h else (new_long, pre.resize_size)
    im = im.resize(size, RESAMPLE[pre.interpolation])
    s = pre.image_size
    left = round((size[0] - s) / 2.0)
    top = round((size[1] - s) / 2.0)
    im = im.crop((left, top, left + s, top + s))
    arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _trim_long_side(im: Image.Image, ratio: int = 4) -> Image.Image:
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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k largest, best first (ties: lower index first)."""
    k = min(k, probs.shape[-1])
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(probs, order, axis=-1)


# --- models ------------------------------------------------------------------------------------
class SessionCache:
    """onnxruntime sessions keyed by model path and mtime, least recently used dropped first."""

    def __init__(self, size: int = SESSION_CACHE_SIZE) -> None:
        self.size = max(1, size)
        self._sessions: OrderedDict[tuple[str, int, int], ort.InferenceSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> ort.InferenceSession:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._sessions:
                self._sessions.move_to_end(key)
                return self._sessions[key]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(_env_number("EPOCHSCOPE_ORT_THREADS", 2))
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"cannot load the model {path.name}: {e}") from None
        with self._lock:
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.size:
                self._sessions.popitem(last=False)
        return session

    def __len__(self) -> int:
        return len(self._sessions)


SESSIONS = SessionCache()


@dataclass
class Classifier:
    """One run's epoch model with its classes and preprocessing."""

    session: ort.InferenceSession
    pre: Preprocess
    classes: list[tuple[int, str, str]]

    @classmethod
    def for_run(
        cls, run_dir: str | os.PathLike[str], epoch: int, cache: SessionCache = SESSIONS
    ) -> Classifier:
        run_dir = Path(run_dir)
        pre = Preprocess.from_run_info(read_run_info(run_dir))
        return cls(cache.get(model_path(run_dir, epoch)), pre, read_classes(run_dir))

    def predict(self, batch: np.ndarray, k: int = 5) -> list[list[dict[str, Any]]]:
        logits = self.session.run([self.pre.output], {self.pre.input_name: batch})[0]
        if logits.ndim != 2 or logits.shape[1] != len(self.classes):
            raise ValueError(
                f"the model gives {logits.shape} outputs for {len(self.classes)} classes"
            )
        idx, prob = top_k(softmax(logits), k)
        return [
            [
                {
                    "index": int(i),
                    "wnid": self.classes[int(i)][1],
                    "name": self.classes[int(i)][2],
                    "probability": float(p),
                }
                for i, p in zip(row_i, row_p, strict=True)
            ]
            for row_i, row_p in zip(idx, prob, strict=True)
        ]

    def classify(
        self, uploads: list[bytes], max_bytes: int | None = None, k: int = 5
    ) -> list[list[dict[str, Any]] | ImageError]:
        """Top-k per upload, or the ImageError of that upload; one bad file spoils nothing."""
        images: list[Image.Image | ImageError] = []
        for data in uploads:
            try:
                images.append(
                    decode_image(data, max_bytes=max_bytes, draft_size=2 * self.pre.resize_size)
                )
            except ImageError as e:
                images.append(e)
        return self.classify_images(images, k)

    def classify_images(
        self, images: list[Image.Image | ImageError], k: int = 5
    ) -> list[list[dict[str, Any]] | ImageError]:
        """Top-k per decoded image; ImageErrors pass through in their place."""
        results: list[list[dict[str, Any]] | ImageError] = list(images)  # type: ignore[arg-type]
        where = [n for n, im in enumerate(images) if not isinstance(im, ImageError)]
        if where:
            batch = np.stack([preprocess_image(images[n], self.pre) for n in where])
            for n, top in zip(where, self.predict(batch, k), strict=True):
                results[n] = top
        return results


def thumbnail_jpeg(im: Image.Image, size: int = 160) -> bytes:
    """A small JPEG of a decoded upload, for the page."""
    im = im.copy()
    im.thumbnail((size, size))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=80)
    return out.getvalue()
