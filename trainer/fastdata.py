"""The input pipeline the trainer picks: image files, a prepared store, or a decoded cache.

``plan`` decides (a pure function, logged and written to run.json as ``data.loader``):

- ``memory-cache``: the padded-crop recipe with a dataset whose decoded uint8 pixels fit the
  memory budget (a quarter of the available memory, split over the processes of this machine):
  every image is decoded once before the first epoch, then a batch is an index gather plus a
  vectorised crop and flip in the training process. No loader workers, so on CPU every core
  trains; on a 32 px photo dataset this is as fast as training from tensors.
- ``prepared``: ``--data`` is a store written by ``prepare-data`` (images are slices of one
  memory-mapped file, already shrunk): the DataLoader reads it with ``--workers`` processes.
- ``jpeg``: the image files through a DataLoader with ``--workers`` processes.

Every loader yields the trainer's batch: ``(uint8 [B, 3, S, S], labels, indices, ok)``.
"""

from __future__ import annotations

import argparse
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from epochscope.records import Preprocess
from trainer import recipe
from trainer.augment import PaddedRandomCrop, ResizeCenterCrop
from trainer.data import ImageDataset, build_loader
from trainer.datasets import (
    IMAGE_ERRORS,
    MEAN,
    STD,
    DatasetIndex,
    EvalPipeline,
    Pipeline,
    RandomHorizontalFlip,
    discover,
    kept_rows,
    train_pipeline,
)
from trainer.recipe import CACHE_CHOICES
from trainer.store import Store, StoreIndex, is_store

LOADERS = ("memory-cache", "prepared", "jpeg")
MEMORY_SHARE = 0.25  # of the available memory, at most, for the decoded cache


def discover_any(data: str | Path, val_fraction: float) -> DatasetIndex:
    """``discover`` for image folders, or the index of a prepared store."""
    if is_store(data):
        return Store(data).index()
    return discover(data, val_fraction)


# --- the decision -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    loader: str  # one of LOADERS
    reason: str

    @property
    def in_memory(self) -> bool:
        return self.loader == "memory-cache"


def cache_bytes(images: int, image_size: int) -> int:
    return images * 3 * image_size * image_size


def memory_budget(processes_here: int = 1, available: int | None = None) -> int:
    """Bytes one process may spend on the cache."""
    if available is None:
        import psutil

        available = psutil.virtual_memory().available
    return int(available * MEMORY_SHARE / max(1, processes_here))


def plan(
    cache: str, augment: str, images: int, image_size: int, budget: int, prepared: bool
) -> Plan:
    """Which loader a run uses, and why (one line for the log)."""
    if cache not in CACHE_CHOICES:
        raise ValueError(f"unknown --cache {cache!r}; choose from: {', '.join(CACHE_CHOICES)}")
    files = "prepared" if prepared else "jpeg"
    need = cache_bytes(images, image_size)
    size = f"{need / 2**20:,.0f} MiB decoded"
    if cache == "none":
        return Plan(files, "--cache none")
    if augment != "pad-crop":
        if cache == "memory":
            raise ValueError("--cache memory needs --augment pad-crop (resized crops need the "
                             "full-resolution image each epoch)")  # fmt: skip
        return Plan(files, f"{augment} crops need the full image each epoch")
    if need > budget and cache == "auto":
        return Plan(files, f"{size} exceed the cache budget of {budget / 2**20:,.0f} MiB")
    return Plan("memory-cache", f"{size} fit in memory" if need <= budget else "--cache memory")


# --- pipelines ----------------------------------------------------------------------------------
def eval_preprocess(args: argparse.Namespace) -> Preprocess:
    """The run's recorded preprocessing: what evaluation and the dashboard do to a photo."""
    return Preprocess(image_size=args.image_size, resize_size=recipe.eval_resize_size(args),
                      mean=MEAN, std=STD)  # fmt: skip


def train_steps(args: argparse.Namespace) -> Pipeline:
    """The per-image training pipeline of the files and store paths."""
    s = args.image_size
    if args.augment == "pad-crop":
        steps = (ResizeCenterCrop(s), PaddedRandomCrop(s, recipe.crop_padding(s)),
                 RandomHorizontalFlip())  # fmt: skip
        return Pipeline(s, s, steps)
    return train_pipeline(s, args.min_crop_scale)


class StoreDataset(Dataset):
    """Like ImageDataset, with images read from a prepared store."""

    def __init__(
        self, store: Store, start: int, samples: Sequence[tuple[str, int]], pipeline: Any
    ) -> None:
        self.store, self.start, self.samples, self.pipeline = store, start, samples, pipeline

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, bool]:
        label = self.samples[index][1]
        try:
            arr = self.pipeline(io.BytesIO(self.store.read(self.start + index)))
            ok = True
        except IMAGE_ERRORS:
            size = self.pipeline.image_size
            arr, ok = np.zeros((3, size, size), np.uint8), False
        return torch.from_numpy(np.ascontiguousarray(arr)), label, index, ok


def dataset_for(index: DatasetIndex, split: str, pipeline: Any) -> Dataset:
    samples = index.train if split == "train" else index.val
    if isinstance(index, StoreIndex) and index.store is not None:
        start = 0 if split == "train" else index.val_start
        return StoreDataset(Store(index.store), start, samples, pipeline)
    return ImageDataset(index.root, samples, pipeline)


class BytesDataset(Dataset):
    """``(encoded bytes, label, index)`` of a split: what loader workers read when the GPU
    decodes (an unreadable file gives empty bytes, which the decoder flags)."""

    def __init__(self, index: DatasetIndex, split: str) -> None:
        self.samples = index.train if split == "train" else index.val
        self.root = index.root
        self.store = Store(index.store) if isinstance(index, StoreIndex) and index.store else None
        self.start = index.val_start if self.store is not None and split == "val" else 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[bytes, int, int]:
        rel, label = self.samples[i]
        try:
            data = self.store.read(self.start + i) if self.store else (self.root / rel).read_bytes()
        except OSError:
            data = b""
        return data, label, i


# --- the in-memory cache ------------------------------------------------------------------------
def decode_all(dataset: Dataset, workers: int, progress: bool = False) -> tuple[torch.Tensor, ...]:
    """Every image of ``dataset`` (a deterministic pipeline) as one uint8 tensor, with labels
    and the ok flags (an unreadable image stays a blank, flagged, as on the other paths)."""
    from tqdm import tqdm

    loader = DataLoader(dataset, batch_size=256, num_workers=workers, shuffle=False)
    parts: list[tuple[torch.Tensor, ...]] = []
    for images, labels, _, ok in tqdm(loader, desc="decode once", disable=not progress,
                                      leave=False, dynamic_ncols=True):  # fmt: skip
        parts.append((images, labels, ok))
    images, labels, ok = (torch.cat([p[k] for p in parts]) for k in range(3))
    return images, labels, ok


def crop_flip(
    padded: torch.Tensor, idx: torch.Tensor, pad: int, g: torch.Generator
) -> torch.Tensor:
    """Random crops (offsets 0..2 * pad) and horizontal flips of the images ``idx`` of a
    zero-padded uint8 tensor [N, C, H + 2 pad, W + 2 pad]: a strided view holds every crop
    window of every image and one gather picks each image's window, so the batch is read once
    and nothing per pixel runs in Python or needs a per-pixel index."""
    total, c, hp, wp = padded.shape
    k, h, w = 2 * pad + 1, hp - 2 * pad, wp - 2 * pad
    sn, sc, sh, sw = padded.stride()
    windows = padded.as_strided((total, k, k, c, h, w), (sn, sh, sw, sc, sh, sw))
    n = len(idx)
    dy = torch.randint(0, k, (n,), generator=g)
    dx = torch.randint(0, k, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = windows[idx, dy, dx]
    out[flip] = out[flip].flip(3)
    return out


def pad_crop_flip(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Zero-padded random crop and flip of every image of a uint8 batch (PaddedRandomCrop +
    RandomHorizontalFlip on a batch)."""
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)).contiguous()
    return crop_flip(padded, torch.arange(len(x)), pad, g)


class CachedLoader:
    """Batches from decoded images in memory, in the order of a DistributedSampler (so
    ``set_epoch`` shuffles and shards as for a DataLoader); training batches are cropped and
    flipped on the fly with a generator seeded by (seed, epoch, rank)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ok: torch.Tensor,
        sampler: DistributedSampler,
        batch_size: int,
        *,
        train: bool,
        pad: int = 0,
        seed: int = 0,
    ) -> None:
        if train:  # padded once here, so a batch is one gather of its crop windows
            images = torch.nn.functional.pad(images, (pad, pad, pad, pad)).contiguous()
        self.images, self.labels, self.ok = images, labels, ok
        self.sampler, self.batch_size = sampler, batch_size
        self.train, self.pad, self.seed = train, pad, seed

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        epoch = getattr(self.sampler, "epoch", 0)
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + epoch * 7919 + self.sampler.rank) % 2**63
        )
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = crop_flip(self.images, idx, self.pad, g) if self.train else self.images[idx]
            yield x, self.labels[idx], idx, self.ok[idx]


# --- putting it together ------------------------------------------------------------------------
@dataclass
class Loaders:
    train: Any
    val: Any
    train_sampler: DistributedSampler
    plan: Plan
    decode_seconds: float = 0.0


def processes_on_this_machine() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


class KeptSampler(DistributedSampler):
    """DistributedSampler over the training rows kept (all but ``--exclude``'s): it shuffles
    and shares positions in ``kept`` and yields the rows they hold, so every loader reads the
    dataset by its own row numbers as before."""

    def __init__(self, kept: np.ndarray, **kwargs) -> None:
        super().__init__(range(len(kept)), **kwargs)
        self.kept = kept

    def __iter__(self):
        return (int(self.kept[i]) for i in super().__iter__())


def build_loaders(
    index: DatasetIndex,
    args: argparse.Namespace,
    *,
    world: int,
    rank: int,
    batch: int,
    pin_memory: bool,
    chosen: Plan | None = None,
    progress: bool = False,
    device: torch.device | None = None,
) -> Loaders:
    """The training and validation loaders of a run (``batch`` per process). Files and stores
    read every epoch decode on the GPU when ``--decode`` allows and CUDA can (the plan's
    loader then ends in ``+nvjpeg``); validation keeps the CPU path, the dashboard's pixels."""
    import dataclasses
    import time

    chosen = chosen or plan_for(index, args)
    train_pipe, eval_pipe = train_steps(args), EvalPipeline(eval_preprocess(args))
    train_sampler = KeptSampler(
        kept_rows(index), num_replicas=world, rank=rank, shuffle=True, seed=args.seed
    )
    # no shuffling: each rank reads every world-th image; the padding repeats are dropped later
    val_sampler = DistributedSampler(range(len(index.val)), num_replicas=world, rank=rank,
                                     shuffle=False)  # fmt: skip
    if not chosen.in_memory:
        val_set = dataset_for(index, "val", eval_pipe)
        val = build_loader(val_set, 2 * batch, val_sampler, args.workers, train=False,
                           pin_memory=pin_memory)  # fmt: skip
        decode = _decode_choice(args, device)
        if decode.gpu and args.augment == "resized-crop":
            from trainer import gpu_decode

            raw = DataLoader(BytesDataset(index, "train"), batch_size=batch, sampler=train_sampler,
                             num_workers=args.workers, drop_last=True,
                             collate_fn=gpu_decode.collate_bytes,
                             persistent_workers=args.workers > 0)  # fmt: skip
            decoder = gpu_decode.BatchDecoder(device, decode)  # type: ignore[arg-type]
            train = gpu_decode.GpuJpegLoader(raw, decoder, args.image_size, args.min_crop_scale,
                                             args.seed, rank)  # fmt: skip
            gpu_plan = dataclasses.replace(
                chosen, loader=chosen.loader + "+nvjpeg", reason=f"{chosen.reason}; {decode.reason}"
            )
            return Loaders(train, val, train_sampler, gpu_plan)
        if decode.reason != "--decode cpu":
            chosen = dataclasses.replace(
                chosen, reason=f"{chosen.reason}; CPU decode: {decode.reason}"
            )
        train_set = dataset_for(index, "train", train_pipe)
        return Loaders(
            build_loader(train_set, batch, train_sampler, args.workers, train=True,
                         pin_memory=pin_memory),
            val, train_sampler, chosen,
        )  # fmt: skip
    t0 = time.perf_counter()
    s = args.image_size
    # large datasets decode in parallel; a few thousand small photos are quicker in-process
    workers = 0 if len(index.train) + len(index.val) < 20_000 else max(1, os.cpu_count() or 1)
    fixed = Pipeline(s, s, (ResizeCenterCrop(s),))
    train = decode_all(dataset_for(index, "train", fixed), workers, progress)
    val = decode_all(dataset_for(index, "val", eval_pipe), workers, progress)
    loaders = Loaders(
        CachedLoader(*train, train_sampler, batch, train=True, pad=recipe.crop_padding(s),
                     seed=args.seed),
        CachedLoader(*val, val_sampler, 2 * batch, train=False),
        train_sampler, chosen, time.perf_counter() - t0,
    )  # fmt: skip
    if pin_memory:  # batches are gathered from here: pinned, their copy to the GPU overlaps
        for cached in (loaders.train, loaders.val):
            cached.images = cached.images.pin_memory()
    return loaders


def _decode_choice(args: argparse.Namespace, device: torch.device | None):
    from trainer import gpu_decode

    return gpu_decode.choose(getattr(args, "decode", "auto"), device or torch.device("cpu"))


def plan_for(index: DatasetIndex, args: argparse.Namespace) -> Plan:
    images = len(index.train) + len(index.val)
    budget = memory_budget(processes_on_this_machine())
    return plan(getattr(args, "cache", "auto"), args.augment, images, args.image_size, budget,
                isinstance(index, StoreIndex))  # fmt: skip
