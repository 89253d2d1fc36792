"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``,
batched) with augmentation on the GPU, and a CPU fallback for what the hardware path refuses.

Training on a fast GPU from JPEGs is decode-bound on the CPU (an H100 trained ResNet-50 from
JPEGs at 2,635 img/s with 14 Pillow workers against 4,078 from tensors). Here the loader
workers only read bytes (files or a prepared store); the training process decodes a whole
batch in one nvJPEG call, then crops, resizes and flips on the device. nvJPEG's batched path
takes baseline JPEGs with 1 or 3 channels; progressive and CMYK JPEGs and every other format
(PNG, ...) are decoded by Pillow on the CPU and copied over. The choice is automatic
(``--decode auto``: nvJPEG when CUDA and torchvision's GPU decoder work, else the CPU path),
logged, and recorded in run.json as ``data.loader``; without CUDA nothing here runs but the
fallback, which is what CI tests. torchvision is imported lazily and guarded: a torchvision
that does not match the installed torch must not break the trainer.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer.recipe import DECODE_CHOICES

# start-of-frame markers: baseline and extended sequential Huffman (what nvJPEG batches),
# progressive, and the rest (lossless, arithmetic coding)
_SOF_SEQUENTIAL = {0xC0, 0xC1}
_SOF_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_SOF_OTHER = {0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF}


def jpeg_kind(data: bytes) -> str:
    """``baseline`` (sequential, 1 or 3 channels: nvJPEG's), ``progressive``, ``cmyk``,
    ``other-jpeg`` or ``not-jpeg``, read from the markers before the first scan."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return "not-jpeg"
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return "other-jpeg"  # not a marker where one must be: let Pillow judge
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_SEQUENTIAL | _SOF_PROGRESSIVE | _SOF_OTHER:
            if i + 10 > len(data):
                return "other-jpeg"
            channels = data[i + 9]
            if channels == 4:
                return "cmyk"
            if marker in _SOF_PROGRESSIVE:
                return "progressive"
            if marker in _SOF_OTHER or channels not in (1, 3):
                return "other-jpeg"
            return "baseline"
        if marker == 0xDA:  # a scan before any frame header
            return "other-jpeg"
        i += 2 + length
    return "other-jpeg"


# --- the choice ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeChoice:
    name: str  # "nvjpeg" or "cpu"
    reason: str

    @property
    def gpu(self) -> bool:
        return self.name == "nvjpeg"


def _torchvision_io():
    """torchvision.io, or the reason it cannot be used (an import error of any kind: a
    torchvision built for another torch fails in many ways)."""
    try:
        import torchvision.io as tvio
    except Exception as e:  # any failure means "no GPU decoder here"
        return None, f"torchvision is not importable ({type(e).__name__}: {str(e)[:120]})"
    if not hasattr(tvio, "decode_jpeg"):
        return None, "this torchvision has no decode_jpeg"
    return tvio, ""


def _probe_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def choose(preference: str, device: torch.device) -> DecodeChoice:
    """nvJPEG or the CPU, and why; ``gpu`` that cannot be honoured is an error."""
    if preference not in DECODE_CHOICES:
        raise ValueError(f"unknown --decode {preference!r}; choose from {DECODE_CHOICES}")
    if preference == "cpu":
        return DecodeChoice("cpu", "--decode cpu")
    reason = ""
    if device.type != "cuda" or not torch.cuda.is_available():
        reason = "no CUDA device"
    else:
        tvio, reason = _torchvision_io()
        if tvio is not None:
            try:  # one real decode on the device: a driver or build mismatch shows here
                blob = torch.frombuffer(bytearray(_probe_jpeg()), dtype=torch.uint8)
                out = tvio.decode_jpeg([blob], device=device)
                if out[0].shape[-2:] != (16, 16):
                    reason = "nvJPEG probe decoded the wrong size"
            except Exception as e:
                reason = f"nvJPEG probe failed ({type(e).__name__}: {str(e)[:120]})"
            if not reason:
                return DecodeChoice("nvjpeg", "torchvision.io.decode_jpeg on " + str(device))
    if preference == "gpu":
        raise ValueError(f"--decode gpu asked for, but {reason}")
    return DecodeChoice("cpu", reason)


# --- decoding a batch ---------------------------------------------------------------------------
def cpu_decode(data: bytes) -> torch.Tensor:
    """Pillow: any format, upright, 8-bit RGB, as uint8 [3, H, W]."""
    from PIL import Image

    from epochscope import preprocess as pre

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = pre.to_rgb(pre.upright(im))
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


@dataclass
class BatchDecoder:
    """Decode a batch of encoded images to uint8 [3, H, W] tensors on ``device``: baseline JPEGs
    in one nvJPEG call when ``choice`` is nvjpeg, the rest (or everything) with Pillow."""

    device: torch.device
    choice: DecodeChoice
    counts: dict[str, int] = field(default_factory=lambda: {"gpu": 0, "cpu": 0, "failed": 0})

    def decode(self, blobs: Sequence[bytes]) -> tuple[list[torch.Tensor | None], list[bool]]:
        out: list[torch.Tensor | None] = [None] * len(blobs)
        on_gpu = [i for i, b in enumerate(blobs) if self.choice.gpu and jpeg_kind(b) == "baseline"]
        if on_gpu:
            tvio, _ = _torchvision_io()
            try:
                tensors = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in on_gpu]
                decoded = tvio.decode_jpeg(tensors, mode=tvio.ImageReadMode.RGB, device=self.device)
                for i, img in zip(on_gpu, decoded, strict=True):
                    out[i] = img
                self.counts["gpu"] += len(on_gpu)
            except Exception:  # a file nvJPEG chokes on: the CPU decodes the batch
                pass
        ok = [True] * len(blobs)
        for i, blob in enumerate(blobs):
            if out[i] is not None:
                continue
            try:
                out[i] = cpu_decode(blob).to(self.device, non_blocking=True)
                self.counts["cpu"] += 1
            except Exception:  # unreadable: flagged, as on the other paths
                ok[i] = False
                self.counts["failed"] += 1
        return out, ok


# --- augmenting on the device -------------------------------------------------------------------
def resized_crop_box(
    h: int, w: int, scale: tuple[float, float], rnd: random.Random
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width), ratio 3/4..4/3, as the CPU step."""
    area = w * h
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rnd.uniform(*scale)
        aspect = math.exp(rnd.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return rnd.randint(0, h - ch), rnd.randint(0, w - cw), ch, cw
    side = min(w, h)
    return (h - side) // 2, (w - side) // 2, side, side


def resized_crop_flip(
    images: Sequence[torch.Tensor | None], size: int, scale: tuple[float, float], rnd: random.Random
) -> torch.Tensor:
    """uint8 [B, 3, size, size] on the images' device: a random resized crop (bilinear,
    antialiased) and a random horizontal flip of each; a missing image gives zeros."""
    device = next((im.device for im in images if im is not None), torch.device("cpu"))
    out = torch.zeros(len(images), 3, size, size, dtype=torch.uint8, device=device)
    for i, img in enumerate(images):
        if img is None:
            continue
        top, left, ch, cw = resized_crop_box(img.shape[1], img.shape[2], scale, rnd)
        crop = img[None, :, top : top + ch, left : left + cw].float()
        resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)  # fmt: skip
        if rnd.random() < 0.5:
            resized = resized.flip(3)
        out[i] = resized[0].round_().clamp_(0, 255).to(torch.uint8)
    return out


class GpuJpegLoader:
    """Training batches decoded and augmented on the device. ``loader`` is a DataLoader whose
    dataset yields ``(encoded bytes, label, index)`` (workers only read), batched as lists."""

    def __init__(
        self,
        loader: Any,
        decoder: BatchDecoder,
        image_size: int,
        min_scale: float,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        self.loader, self.decoder = loader, decoder
        self.image_size, self.scale = image_size, (min_scale, 1.0)
        self.batch_size = loader.batch_size
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch = getattr(self.loader.sampler, "epoch", 0)
        rnd = random.Random(self.seed * 1_000_003 + epoch * 7919 + self.rank)
        for blobs, labels, indices in self.loader:
            images, ok = self.decoder.decode(blobs)
            x = resized_crop_flip(images, self.image_size, self.scale, rnd)
            yield x, labels, indices, torch.tensor(ok)


def collate_bytes(batch: list[tuple[bytes, int, int]]) -> tuple[list[bytes], torch.Tensor, ...]:
    blobs, labels, indices = zip(*batch, strict=True)
    return list(blobs), torch.tensor(labels), torch.tensor(indices)
