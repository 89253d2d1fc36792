"""Classify uploaded photos with a run's ONNX model (onnxruntime; no training framework).

Everything happens in memory: uploads are decoded from bytes and never written to disk. Each
failure is an ``ImageError`` whose message can be shown beside that file as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFile, UnidentifiedImageError

from dashboard import config, model_limits, runs
from epochscope import ModelFile, Run
from epochscope.predictions import softmax, top_k
from epochscope.preprocess import apply_draft, draft_size, prepare, to_rgb, upright
from epochscope.records import ONNX_EMBEDDING, Preprocess
from epochscope.similar import has_embedding_output

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
MAX_UPLOAD_BYTES = config.max_upload_bytes()
#: images over this many pixels are refused before decoding (EPOCHSCOPE_MAX_MEGAPIXELS)
MAX_PIXELS = int(_env_number("EPOCHSCOPE_MAX_MEGAPIXELS", 64) * 1_000_000)
SESSION_CACHE_SIZE = int(_env_number("EPOCHSCOPE_MODEL_CACHE", 4))

# Pillow's own guard warns at MAX_IMAGE_PIXELS and raises at twice that; our explicit check
# below comes first with a clearer message, this is the backstop.
Image.MAX_IMAGE_PIXELS = max(MAX_PIXELS, 1)


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


# --- decoding ----------------------------------------------------------------------------------
def decode_image(
    data: bytes,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    draft_px: int | None = None,
    model_px: int | None = None,
) -> Image.Image:
    """Bytes of a photo -> upright 8-bit RGB image, or an ImageError saying what is wrong.

    ``draft_px``: a JPEG decodes at the smallest scale whose sides still cover it (use
    ``epochscope.preprocess.draft_size(pre)`` to decode exactly as the trainer evaluates).
    ``model_px``: the shorter side the model resizes to; an image in another mode than RGB
    (16-bit, palette, transparent, CMYK) over twice that is box-reduced while it is converted,
    strip by strip, so no full-size copy is made (what Pillow's ``reducing_gap`` does)."""
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
        apply_draft(im, draft_px)
        im.load()
    except Image.DecompressionBombError:
        raise ImageError(BOMB_MESSAGE.format(limit=max_pixels / 1e6), 413) from None
    except MemoryError:
        raise ImageError("the image is too large to decode", 413) from None
    except Exception as e:  # struct.error, IndexError, ... from damaged data
        raise ImageError(f"the image is truncated or damaged ({_short(e)})", 422) from None
    try:
        if model_px and im.mode != "RGB" and min(im.size) // (2 * model_px) >= 2:
            im = shrink(im, min(im.size) // (2 * model_px))
        return to_rgb(upright(im))
    except MemoryError:
        raise ImageError("the image is too large to decode", 413) from None
    except Exception as e:  # an odd mode or palette that cannot become RGB
        raise ImageError(f"the image cannot be converted to RGB ({_short(e)})", 422) from None


STRIP_PIXELS = 1 << 21  # pixels converted at a time when a mode cannot be reduced in place
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F")  # modes Image.reduce takes


def shrink(im: Image.Image, factor: int) -> Image.Image:
    """Box-reduce by ``factor`` without a full-size copy: in place for the modes reduce takes,
    else strip by strip through 32-bit grey (16-bit) or RGBA (palette, 1-bit, ...)."""
    if im.mode in REDUCIBLE:
        small = im.reduce(factor)
    else:
        mode = "I" if im.mode.startswith("I;16") else "RGBA"
        w, h = im.size
        rows = max(factor, STRIP_PIXELS // max(w, 1) // factor * factor)
        small = Image.new(mode, (-(-w // factor), -(-h // factor)))
        for top in range(0, h, rows):
            strip = im.crop((0, top, w, min(h, top + rows))).convert(mode)
            small.paste(strip.reduce(factor), (0, top // factor))
    small.info = dict(im.info)  # keeps the EXIF orientation for upright()
    return small


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:200] if text else "") or type(e).__name__


# --- models ------------------------------------------------------------------------------------
def model_seconds() -> float:
    """Time one classification may take ($EPOCHSCOPE_MODEL_SECONDS, default 5)."""
    return config.number("EPOCHSCOPE_MODEL_SECONDS", 5.0, 0.01)


class ModelTimeout(ImageError):
    """The model overran its time budget: it was stopped, and is refused until its file changes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


ModelKey = tuple[str, int, int]


class SessionCache:
    """onnxruntime sessions keyed by model path and mtime, least recently used dropped first.

    A model file is checked (``model_limits``) before onnxruntime sees it, and loaded from
    those same bytes; a model that overran its time budget stays refused until its file
    changes (another mtime or size)."""

    def __init__(self, size: int = SESSION_CACHE_SIZE) -> None:
        self.size = max(1, size)
        self._sessions: OrderedDict[ModelKey, ort.InferenceSession] = OrderedDict()
        self._refused: dict[ModelKey, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(model: ModelFile) -> ModelKey:
        return model.key

    def get(self, model: ModelFile) -> ort.InferenceSession:
        key = self.key(model)
        with self._lock:
            if key in self._refused:
                raise ValueError(self._refused[key])
            if key in self._sessions:
                self._sessions.move_to_end(key)
                return self._sessions[key]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(_env_number("EPOCHSCOPE_ORT_THREADS", 2))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            # the bounded reader: a regular file inside its run (models/..), checked, loaded
            # from those same bytes
            data = model_limits.check_model(model)
            session = ort.InferenceSession(
                data, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except model_limits.ModelRefused as e:
            raise ValueError(f"the model {model.name} is refused: {e}") from None
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"cannot load the model {model.name}: {e}") from None
        with self._lock:
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.size:
                self._sessions.popitem(last=False)
        return session

    def refuse(self, key: ModelKey, message: str) -> None:
        """Drop the session of ``key`` and answer ``message`` for it until its file changes."""
        with self._lock:
            self._sessions.pop(key, None)
            self._refused[key] = message
            while len(self._refused) > 64:  # old files' entries: forget the oldest
                self._refused.pop(next(iter(self._refused)))

    def __len__(self) -> int:
        return len(self._sessions)


SESSIONS = SessionCache()


@dataclass
class Classifier:
    """One run's epoch model with its classes and preprocessing."""

    session: ort.InferenceSession
    pre: Preprocess
    classes: list[tuple[int, str, str]]
    key: ModelKey | None = None
    cache: SessionCache | None = None
    seconds: float | None = None  # the time budget of one run; None: model_seconds()

    @classmethod
    def for_run(
        cls, run: Run | str | os.PathLike[str], epoch: int, cache: SessionCache = SESSIONS
    ) -> Classifier:
        """The classifier of ``run``'s epoch (a Run, or a run directory: tests, the bench)."""
        if not isinstance(run, Run):
            run = runs.at(run)
        pre = run.info.preprocess
        if pre is None:
            raise LookupError(f"run {run.name!r} records no preprocessing: it has no model")
        classes = list(zip(range(run.num_classes), run.wnids, run.names, strict=True))
        try:
            model = run.model(epoch)
        except OSError:
            raise LookupError(f"run {run.name!r} has no model for epoch {epoch}") from None
        return cls(cache.get(model), pre, classes, cache.key(model), cache)

    @property
    def has_embedding(self) -> bool:
        """Whether the model gives the ``embedding`` output (models exported before it did, or
        without a head the export found, classify only)."""
        return has_embedding_output(self.session)

    def features(self, batch: np.ndarray) -> np.ndarray:
        """The model's ``embedding`` output [N, F] for ``batch`` (under the same time budget);
        ValueError when the model has none."""
        if not self.has_embedding:
            raise ValueError(f"the model has no {ONNX_EMBEDDING!r} output")
        return self._run(batch, ONNX_EMBEDDING)

    def _run(self, batch: np.ndarray, output: str | None = None) -> np.ndarray:
        """The model's ``output`` (default: the logits) on ``batch``, stopped (ModelTimeout)
        once it overruns its budget."""
        budget = model_seconds() if self.seconds is None else self.seconds
        options = ort.RunOptions()
        options.log_severity_level = 4  # the stop is reported below, once
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            options.terminate = True

        timer = threading.Timer(budget, stop)
        timer.daemon = True
        timer.start()
        try:
            names = [output or self.pre.output]
            return self.session.run(names, {self.pre.input_name: batch}, options)[0]
        except Exception:
            if not stopped.is_set():
                raise
            message = (
                f"the model was stopped after its {budget:g} s limit (EPOCHSCOPE_MODEL_SECONDS); "
                "it is refused until its file changes"
            )
            if self.cache is not None and self.key is not None:
                self.cache.refuse(self.key, message)
            raise ModelTimeout(message) from None
        finally:
            timer.cancel()

    def predict(self, batch: np.ndarray, k: int = 5) -> list[list[dict[str, Any]]]:
        logits = self._run(batch)
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
        """Top-k per upload, or the ImageError of that upload; one bad file spoils nothing.

        Each upload is decoded (in a decode slot) straight to the model's input, so only one
        decoded photo is in memory at a time."""
        tensors: list[np.ndarray | ImageError] = []
        for data in uploads:
            try:
                tensors.append(decode_for_model(data, self.pre, max_bytes)[0])
            except ImageError as e:
                tensors.append(e)
        return self.classify_tensors(tensors, k)

    def classify_tensors(
        self, tensors: list[np.ndarray | ImageError], k: int = 5
    ) -> list[list[dict[str, Any]] | ImageError]:
        """Top-k per preprocessed input [3, S, S]; ImageErrors pass through in their place."""
        results: list[list[dict[str, Any]] | ImageError] = list(tensors)  # type: ignore[arg-type]
        where = [n for n, t in enumerate(tensors) if not isinstance(t, ImageError)]
        if where:
            batch = np.stack([tensors[n] for n in where])
            for n, top in zip(where, self.predict(batch, k), strict=True):
                results[n] = top
        return results

    def classify_images(
        self, images: list[Image.Image | ImageError], k: int = 5
    ) -> list[list[dict[str, Any]] | ImageError]:
        """Top-k per decoded image; ImageErrors pass through in their place."""
        return self.classify_tensors(
            [im if isinstance(im, ImageError) else prepare(im, self.pre) for im in images],
            k,
        )


# --- bounded decoding ---------------------------------------------------------------------------
try:  # glibc keeps a freed decode's pixels in the thread's malloc arena; malloc_trim returns them
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim  # noqa: B018 - present in glibc only
except (OSError, AttributeError):  # pragma: no cover - musl, macOS
    _LIBC = None


def _give_back_memory() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class DecodeSlots:
    """At most ``size`` photo decodes at a time in this process (each can hold up to
    MAX_PIXELS x 4 bytes); a request that waits longer than ``wait`` seconds gets a 503, so
    the server's threads stay free for the pages. Re-entrant within a thread."""

    def __init__(self, size: int, wait: float) -> None:
        self.size, self.wait = max(1, size), wait
        self._sem = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._held = threading.local()
        self.active = 0
        self.peak = 0  # most decodes ever at once (tests read it)

    @contextlib.contextmanager
    def slot(self):
        depth = getattr(self._held, "depth", 0)
        if depth == 0 and not self._sem.acquire(timeout=self.wait):
            raise ImageError("the server is busy with other photos: try again in a moment", 503)
        self._held.depth = depth + 1
        if depth == 0:
            with self._lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            self._held.depth = depth
            if depth == 0:
                with self._lock:
                    self.active -= 1
                self._sem.release()
                # without this, each of gunicorn's threads keeps its last decode's ~100-300 MB
                _give_back_memory()


DECODES = DecodeSlots(config.decode_slots(), config.decode_wait_seconds())


def decode_for_model(
    data: bytes,
    pre: Preprocess,
    max_bytes: int | None = None,
    thumb_px: int | None = None,
    slots: DecodeSlots | None = None,
) -> tuple[np.ndarray, bytes | None]:
    """Bytes of a photo -> (the model's input [3, S, S], a small JPEG when ``thumb_px``).

    Decoded in a slot exactly as the trainer evaluates (JPEG draft at resize_size), at the
    size the model needs; the decoded image is dropped before this returns."""
    draft = draft_size(pre)
    with (slots or DECODES).slot():
        im = decode_image(data, max_bytes=max_bytes, draft_px=draft, model_px=pre.resize_size)
        tensor = prepare(im, pre)
        thumb = None
        if thumb_px:
            if draft and min(im.size) < thumb_px:  # a small model: a sharper thumbnail
                im = decode_image(data, max_bytes=max_bytes, draft_px=thumb_px, model_px=thumb_px)
            thumb = thumbnail_jpeg(im, thumb_px)
    return tensor, thumb


def thumbnail_jpeg(im: Image.Image, size: int = 160) -> bytes:
    """A small JPEG of a decoded upload, for the page."""
    im = im.copy()
    im.thumbnail((size, size))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=80)
    return out.getvalue()
