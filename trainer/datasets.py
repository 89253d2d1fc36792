"""Datasets as people have them on disk, and the image pipeline: numpy and Pillow only.

Shared by both engines (the MXNet engine runs without torch). Layouts (``discover``):
- ``imagenet-folders`` / ``image-folders``: ``train/<class>/*`` and ``val/<class>/*``;
- ``imagenet-flat-val``: ``train/<wnid>/*`` and the official flat ``val/*.JPEG`` labelled by
  ``LOC_val_solution.csv`` (in the data root or in ``val/``);
- ``image-folder-split``: ``<class>/*`` (or ``train/<class>/*`` with no ``val/``): every
  ``round(1 / val_fraction)``-th image of a class, in name order, is held out for validation.

The pipeline is an explicit list of steps per split (decode, geometry, train-only augmentation,
array); random steps draw from the ``rnd`` they are given (the ``random`` module by default, which
PyTorch's loader workers seed; the MXNet loader passes a ``random.Random`` per batch).
"""

from __future__ import annotations

import csv
import math
import os
import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from epochscope import preprocess as eval_preprocess
from epochscope.records import IMAGENET_MEAN, IMAGENET_STD, Preprocess

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif"}
)
WNID_RE = re.compile(r"n\d{8}")
MEAN = IMAGENET_MEAN
STD = IMAGENET_STD
# exceptions Pillow raises for files that are not, or no longer, images
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class DataError(ValueError):
    """The data folder cannot be used; the message says why and what was expected."""


# --- discovery ----------------------------------------------------------------------------------
@dataclass
class DatasetIndex:
    root: Path
    layout: str
    classes: list[str]  # wnids or folder names, in index order
    names: list[str]  # readable names
    train: list[tuple[str, int]] = field(repr=False)  # (path relative to root, label)
    val: list[tuple[str, int]] = field(repr=False)
    excluded: tuple[int, ...] = field(default=(), repr=False)  # train rows never sampled


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_in(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and _is_image(e.name))


def _class_folders(folder: Path) -> dict[str, list[str]]:
    """Sub-folders of ``folder`` that hold images, with their image names."""
    found = {}
    with os.scandir(folder) as it:
        subdirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    for name in subdirs:
        images = _images_in(folder / name)
        if images:
            found[name] = images
    return found


def discover(root: str | Path, val_fraction: float = 0.1) -> DatasetIndex:
    """Find the layout, classes and samples under ``root``; raise DataError when unusable."""
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"--data must be a folder of images; {root} is a file")

    train_dir = root / "train"
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    if train_dir.is_dir():
        train = _class_folders(train_dir)
        if not train:
            raise DataError(f"no images in {train_dir}: expected train/<class>/<image>.JPEG")
        classes = sorted(train)
        samples = _folder_samples(train, classes, "train")
        val_samples = None
        layout = "image-folders"
        if val_dir is not None:
            val_classes = _class_folders(val_dir)
            if val_classes:
                unknown = sorted(set(val_classes) - set(classes))
                if unknown:
                    raise DataError(
                        f"{val_dir} has class folders with no training images: "
                        f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}"
                    )
                val_samples = _folder_samples(val_classes, classes, val_dir.name)
            elif _images_in(val_dir):
                val_samples = _flat_val_samples(root, val_dir, classes)
                layout = "imagenet-flat-val"
        if val_samples is None:
            samples, val_samples = _split(samples, val_fraction)
            layout = "image-folder-split"
    else:
        folders = _class_folders(root)
        if not folders:
            raise DataError(
                f"no images found in {root}: expected train/<class>/*.JPEG with val/<class>/ "
                "(or a flat val/ with LOC_val_solution.csv), or <class>/*.jpg folders"
            )
        classes = sorted(folders)
        samples, val_samples = _split(_folder_samples(folders, classes, ""), val_fraction)
        layout = "image-folder-split"

    if not val_samples:
        raise DataError(f"no validation images found in {root}")
    imagenet = all(WNID_RE.fullmatch(c) for c in classes)
    if imagenet and layout == "image-folders":
        layout = "imagenet-folders"
    return DatasetIndex(root, layout, classes, class_names(classes), samples, val_samples)


def _folder_samples(
    folders: dict[str, list[str]], classes: list[str], prefix: str
) -> list[tuple[str, int]]:
    label = {c: i for i, c in enumerate(classes)}
    base = f"{prefix}/" if prefix else ""
    return [(f"{base}{c}/{name}", label[c]) for c in sorted(folders) for name in folders[c]]


def _split(
    samples: list[tuple[str, int]], val_fraction: float
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    every = max(2, round(1 / val_fraction))
    train, val = [], []
    seen: dict[int, int] = {}
    for path, label in samples:
        k = seen.get(label, 0)
        seen[label] = k + 1
        (val if k % every == every - 1 else train).append((path, label))
    return train, val


def _flat_val_samples(root: Path, val_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    csv_path = next(
        (
            p
            for p in (root / "LOC_val_solution.csv", val_dir / "LOC_val_solution.csv")
            if p.exists()
        ),
        None,
    )
    if csv_path is None:
        raise DataError(
            f"{val_dir} holds images but no class folders, and there is no LOC_val_solution.csv "
            f"in {root} or {val_dir} to label them"
        )
    wnid_of: dict[str, str] = {}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            # PredictionString: "n01751748 x0 y0 x1 y1 n01751748 ..." (the first token is the class)
            tokens = (row.get("PredictionString") or "").split()
            if row.get("ImageId") and tokens:
                wnid_of[row["ImageId"]] = tokens[0]
    label = {c: i for i, c in enumerate(classes)}
    samples, unlabelled, unknown = [], 0, set()
    for name in _images_in(val_dir):
        wnid = wnid_of.get(os.path.splitext(name)[0])
        if wnid is None:
            unlabelled += 1
        elif wnid not in label:
            unknown.add(wnid)
        else:
            samples.append((f"{val_dir.name}/{name}", label[wnid]))
    if unknown:
        raise DataError(
            f"{csv_path.name} labels validation images with classes that have no training "
            f"folder: {', '.join(sorted(unknown)[:5])}"
        )
    if unlabelled:
        warnings.warn(
            f"{unlabelled} image(s) in {val_dir} have no row in {csv_path.name}; ignored",
            stacklevel=2,
        )
    return samples


def class_names(classes: Sequence[str]) -> list[str]:
    """Readable names: the ImageNet catalogue's for wnids, the folder name otherwise."""
    if not any(WNID_RE.fullmatch(c) for c in classes):
        return list(classes)
    from epochscope.catalogue import load_catalogue

    cat = load_catalogue()
    return [cat.by_wnid(c).name if c in cat else c for c in classes]


# --- the pipeline -------------------------------------------------------------------------------
class Step(Protocol):
    def __call__(self, img: Image.Image, rnd: Any = random) -> Image.Image: ...


def open_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode as RGB; JPEGs decode at a reduced scale (1/2..1/8) when that still covers
    ``draft_size``, which is most of the cost saved at low resolution."""
    with Image.open(path) as img:
        eval_preprocess.apply_draft(img, draft_size)
        return img.convert("RGB")


@dataclass(frozen=True)
class RandomResizedCrop:
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, img: Image.Image, rnd: Any = random) -> Image.Image:
        w, h = img.size
        area = w * h
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rnd.uniform(*self.scale)
            aspect = math.exp(rnd.uniform(*log_ratio))
            cw = round(math.sqrt(target * aspect))
            ch = round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = rnd.randint(0, w - cw), rnd.randint(0, h - ch)
                break
        else:  # fall back to the largest centred crop
            cw = ch = min(w, h)
            x, y = (w - cw) // 2, (h - ch) // 2
        return img.resize(
            (self.size, self.size), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch)
        )


@dataclass(frozen=True)
class RandomHorizontalFlip:
    p: float = 0.5

    def __call__(self, img: Image.Image, rnd: Any = random) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rnd.random() < self.p else img


@dataclass(frozen=True)
class Pipeline:
    """Decode at ``draft_size``, then ``steps`` in order, then a uint8 CHW array."""

    image_size: int
    draft_size: int
    steps: tuple[Step, ...]

    def __call__(self, path: str | Path, rnd: Any = random) -> np.ndarray:
        img = open_image(path, self.draft_size)
        for step in self.steps:
            img = step(img, rnd)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


@dataclass(frozen=True)
class EvalPipeline:
    """Evaluation: epochscope's preprocessing (the same the dashboard applies to uploads), as a
    uint8 CHW array; normalisation happens on the device."""

    pre: Preprocess

    @property
    def image_size(self) -> int:
        return self.pre.image_size

    def __call__(self, path: str | Path, rnd: Any = random) -> np.ndarray:
        img = eval_preprocess.open_rgb(path, self.pre)
        return eval_preprocess.resize_crop(img, self.pre).transpose(2, 0, 1)


def eval_pipeline(image_size: int) -> EvalPipeline:
    return EvalPipeline(Preprocess.for_size(image_size, mean=MEAN, std=STD))


def train_pipeline(image_size: int, min_scale: float = 0.08, flip: bool = True) -> Pipeline:
    steps: list[Step] = [RandomResizedCrop(image_size, scale=(min_scale, 1.0))]
    # train-only augmentations are appended after the geometry
    if flip:
        steps.append(RandomHorizontalFlip())
    return Pipeline(image_size, 2 * image_size, tuple(steps))


def preprocess(path: str | Path, image_size: int) -> np.ndarray:
    """One image as the exported model wants it: float32 [3, S, S], normalised."""
    return eval_preprocess.preprocess(path, Preprocess.for_size(image_size, mean=MEAN, std=STD))


def kept_rows(index: DatasetIndex) -> np.ndarray:
    """The training rows an epoch samples: every row but the excluded ones (--exclude)."""
    keep = np.ones(len(index.train), bool)
    keep[list(index.excluded)] = False
    return np.flatnonzero(keep)
