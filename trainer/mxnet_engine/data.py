"""Datasets, the image pipeline and a batch loader for the MXNet engine: numpy and Pillow only.

The PyTorch engine's ``trainer.data`` imports torch at module level, so this module repeats its
framework-free half with the same behaviour: the same layouts (``discover``), the same augmentation
(random resized crop + flip) and evaluation (resize shorter side + centre crop), Pillow decoding
with JPEG draft mode. ``tests/test_mxnet_engine.py`` checks that both agree on the demo data.

The loader decodes batches in spawned worker processes (they never import MXNet) and keeps a
bounded number of batches in flight. Each batch is seeded from (seed, epoch, batch number), so a
resumed epoch sees the same images and crops whatever the number of workers.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import random
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif"}
)
WNID_RE = re.compile(r"n\d{8}")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class DataError(ValueError):
    """The data folder cannot be used; the message says why and what was expected."""


@dataclass
class DatasetIndex:
    root: Path
    layout: str
    classes: list[str]
    names: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]


# --- discovery (the same layouts as trainer.data.discover) --------------------------------------
def _images_in(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(
            e.name
            for e in it
            if e.is_file()
            and not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )


def _class_folders(folder: Path) -> dict[str, list[str]]:
    with os.scandir(folder) as it:
        subdirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    return {n: imgs for n in subdirs if (imgs := _images_in(folder / n))}


def _samples(folders: dict[str, list[str]], classes: list[str], prefix: str) -> list:
    label = {c: i for i, c in enumerate(classes)}
    base = f"{prefix}/" if prefix else ""
    return [(f"{base}{c}/{n}", label[c]) for c in sorted(folders) for n in folders[c]]


def _split(samples: list[tuple[str, int]], val_fraction: float) -> tuple[list, list]:
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    every = max(2, round(1 / val_fraction))
    train, val, seen = [], [], {}
    for path, label in samples:
        k = seen.get(label, 0)
        seen[label] = k + 1
        (val if k % every == every - 1 else train).append((path, label))
    return train, val


def _flat_val(root: Path, val_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    candidates = (root / "LOC_val_solution.csv", val_dir / "LOC_val_solution.csv")
    csv_path = next((p for p in candidates if p.exists()), None)
    if csv_path is None:
        raise DataError(
            f"{val_dir} holds images but no class folders, and there is no LOC_val_solution.csv "
            f"in {root} or {val_dir} to label them"
        )
    wnid_of = {}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
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
        warnings.warn(f"{unlabelled} image(s) in {val_dir} have no label; ignored", stacklevel=2)
    return samples


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
        samples, val_samples, layout = _samples(train, classes, "train"), None, "image-folders"
        if val_dir is not None:
            val_classes = _class_folders(val_dir)
            if val_classes:
                unknown = sorted(set(val_classes) - set(classes))
                if unknown:
                    raise DataError(
                        f"{val_dir} has class folders with no training images: "
                        f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}"
                    )
                val_samples = _samples(val_classes, classes, val_dir.name)
            elif _images_in(val_dir):
                val_samples, layout = _flat_val(root, val_dir, classes), "imagenet-flat-val"
        if val_samples is None:
            (samples, val_samples), layout = _split(samples, val_fraction), "image-folder-split"
    else:
        folders = _class_folders(root)
        if not folders:
            raise DataError(
                f"no images found in {root}: expected train/<class>/*.JPEG with val/<class>/ "
                "(or a flat val/ with LOC_val_solution.csv), or <class>/*.jpg folders"
            )
        classes = sorted(folders)
        samples, val_samples = _split(_samples(folders, classes, ""), val_fraction)
        layout = "image-folder-split"
    if not val_samples:
        raise DataError(f"no validation images found in {root}")
    if layout == "image-folders" and all(WNID_RE.fullmatch(c) for c in classes):
        layout = "imagenet-folders"
    return DatasetIndex(root, layout, classes, class_names(classes), samples, val_samples)


def class_names(classes: Sequence[str]) -> list[str]:
    """Readable names: the ImageNet catalogue's for wnids, the folder name otherwise."""
    if not any(WNID_RE.fullmatch(c) for c in classes):
        return list(classes)
    from assets.catalogue import load_catalogue  # numpy only: fine beside numpy 1.23

    cat = load_catalogue()
    return [cat.by_wnid(c).name if c in cat else c for c in classes]


# --- the pipeline -------------------------------------------------------------------------------
def resize_size_for(image_size: int) -> int:
    return int(image_size * 256 / 224)


def _open(path: Path, draft_size: int) -> Image.Image:
    with Image.open(path) as img:
        img.draft("RGB", (draft_size, draft_size))  # JPEG: decode at a reduced scale
        return img.convert("RGB")


def _random_resized_crop(img: Image.Image, size: int, min_scale: float, rnd: random.Random):
    w, h = img.size
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = w * h * rnd.uniform(min_scale, 1.0)
        aspect = math.exp(rnd.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rnd.randint(0, w - cw), rnd.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x, y = (w - cw) // 2, (h - ch) // 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch))


def _resize_center(img: Image.Image, size: int) -> Image.Image:
    resize = resize_size_for(size)
    w, h = img.size
    scale = resize / min(w, h)
    new = (max(resize, round(w * scale)), max(resize, round(h * scale)))
    if new != (w, h):
        img = img.resize(new, Image.Resampling.BILINEAR)
    x, y = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((x, y, x + size, y + size))


@dataclass(frozen=True)
class Pipeline:
    """One image -> uint8 CHW: train (random resized crop, flip) or eval (resize, centre crop)."""

    image_size: int
    train: bool
    min_scale: float = 0.08

    def __call__(self, path: Path, rnd: random.Random) -> np.ndarray:
        s = self.image_size
        if self.train:
            img = _random_resized_crop(_open(path, 2 * s), s, self.min_scale, rnd)
            if rnd.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            img = _resize_center(_open(path, resize_size_for(s)), s)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def load_batch(
    root: Path, samples: Sequence[tuple[str, int]], pipeline: Pipeline, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images uint8 [B,3,S,S], labels int32 [B], ok bool [B] (False: unreadable, blank image)."""
    rnd = random.Random(seed)
    s = pipeline.image_size
    images = np.zeros((len(samples), 3, s, s), np.uint8)
    labels = np.array([label for _, label in samples], np.int32)
    ok = np.ones(len(samples), bool)
    for i, (rel, _) in enumerate(samples):
        try:
            images[i] = pipeline(root / rel, rnd)
        except IMAGE_ERRORS:
            ok[i] = False
    return images, labels, ok


# --- the loader ---------------------------------------------------------------------------------
_WORKER: dict = {}


def _worker_init(root: Path, train: list, val: list, parent: int) -> None:
    _WORKER.update(root=root, samples={"train": train, "val": val})
    # a worker whose trainer was killed (kill -9) must not linger: watch the parent
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _worker_batch(split: str, rows: list[int], pipeline: Pipeline, seed: int):
    samples = _WORKER["samples"][split]
    return load_batch(_WORKER["root"], [samples[r] for r in rows], pipeline, seed)


class BatchLoader:
    """Batches of (images, labels, rows, ok) for one split, decoded by ``workers`` processes
    (0: in this process) with at most ``prefetch`` batches in flight. The pool persists."""

    def __init__(self, index: DatasetIndex, workers: int, prefetch: int = 4) -> None:
        self.index = index
        self.workers = workers
        self.prefetch = max(1, prefetch) * max(1, workers)
        self._pool = None
        if workers > 0:
            # spawn: the workers start clean, without MXNet's threads from this process
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(
                workers, _worker_init, (index.root, index.train, index.val, os.getpid())
            )

    def batches(
        self, split: str, batch_size: int, pipeline: Pipeline, seed: int, shuffle: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        samples = self.index.train if split == "train" else self.index.val
        order = np.arange(len(samples))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(samples))
        count = len(samples) // batch_size if shuffle else math.ceil(len(samples) / batch_size)
        chunks = [order[i * batch_size : (i + 1) * batch_size].tolist() for i in range(count)]
        seeds = [(seed * 1_000_003 + i) & 0x7FFFFFFF for i in range(count)]
        if self._pool is None:
            for rows, s in zip(chunks, seeds, strict=True):
                images, labels, ok = load_batch(
                    self.index.root, [samples[r] for r in rows], pipeline, s
                )
                yield images, labels, np.array(rows), ok
            return
        pending: deque = deque()
        submitted = 0
        while submitted < count or pending:
            while submitted < count and len(pending) < self.prefetch:
                args = (split, chunks[submitted], pipeline, seeds[submitted])
                pending.append((chunks[submitted], self._pool.apply_async(_worker_batch, args)))
                submitted += 1
            rows, result = pending.popleft()
            images, labels, ok = result.get()
            yield images, labels, np.array(rows), ok

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
