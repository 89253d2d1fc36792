"""Pipeline steps for small images (Pillow only, like trainer.datasets' steps): the padded
random crop of the small-image recipe and the deterministic resize + centre crop it starts
from. The same crop on a whole uint8 batch (for the in-memory cache) is in trainer.fastdata."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps


@dataclass(frozen=True)
class ResizeCenterCrop:
    """Shorter side to ``size``, then the centre ``size`` x ``size`` (a no-op on a photo that
    already has that size, e.g. 32 x 32)."""

    size: int

    def __call__(self, img: Image.Image, rnd: Any = random) -> Image.Image:
        w, h = img.size
        if (w, h) == (self.size, self.size):
            return img
        scale = self.size / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        x, y = (nw - self.size) // 2, (nh - self.size) // 2
        return img.crop((x, y, x + self.size, y + self.size))


@dataclass(frozen=True)
class PaddedRandomCrop:
    """Zero-pad ``pad`` pixels on every side, then a random ``size`` crop (torchvision's
    ``RandomCrop(size, padding=pad)``)."""

    size: int
    pad: int

    def __call__(self, img: Image.Image, rnd: Any = random) -> Image.Image:
        padded = ImageOps.expand(img, border=self.pad, fill=0)
        w, h = padded.size
        x, y = rnd.randint(0, w - self.size), rnd.randint(0, h - self.size)
        return padded.crop((x, y, x + self.size, y + self.size))
