"""The PyTorch side of the data: datasets, loaders, CPU threads and on-device normalisation.

Layouts and the decode/augment pipeline live in :mod:`trainer.datasets` (no torch, shared with
the MXNet engine) and are re-exported here. Workers return uint8 CHW arrays; the float
conversion and normalisation happen on the training device, which keeps the worker-to-trainer
traffic four times smaller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from epochscope.records import resize_size_for
from trainer.datasets import (
    IMAGE_ERRORS,
    IMAGE_EXTENSIONS,
    MEAN,
    STD,
    WNID_RE,
    DataError,
    DatasetIndex,
    EvalPipeline,
    Pipeline,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Step,
    class_names,
    discover,
    eval_pipeline,
    open_image,
    preprocess,
    train_pipeline,
)

__all__ = [
    "IMAGE_ERRORS",
    "IMAGE_EXTENSIONS",
    "MEAN",
    "STD",
    "WNID_RE",
    "DataError",
    "DatasetIndex",
    "EvalPipeline",
    "ImageDataset",
    "Normalize",
    "Pipeline",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Step",
    "build_loader",
    "class_names",
    "cpu_threads",
    "discover",
    "eval_pipeline",
    "open_image",
    "preprocess",
    "resize_size_for",
    "train_pipeline",
]


# --- datasets and loaders -------------------------------------------------------------------------
class ImageDataset(Dataset):
    """``(image uint8 [3,S,S], label, index, ok)``; an unreadable file gives a blank image and
    ``ok=False``, so a bad file is counted and skipped rather than ending a run hours in."""

    def __init__(
        self, root: Path, samples: Sequence[tuple[str, int]], pipeline: Pipeline | EvalPipeline
    ):
        self.root = Path(root)
        self.samples = samples
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, bool]:
        rel, label = self.samples[index]
        try:
            arr = self.pipeline(self.root / rel)
            ok = True
        except IMAGE_ERRORS:
            size = self.pipeline.image_size
            arr = np.zeros((3, size, size), np.uint8)
            ok = False
        return torch.from_numpy(np.ascontiguousarray(arr)), label, index, ok


def build_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler,
    workers: int,
    *,
    train: bool,
    pin_memory: bool,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=train,
        persistent_workers=workers > 0,  # no worker start-up cost every epoch
        prefetch_factor=4 if workers > 0 else None,
    )


def cpu_threads(workers: int, cores: int | None = None) -> int:
    """PyTorch threads for CPU training beside ``workers`` loader processes: the cores the
    workers leave free, at least one. More threads than free cores make PyTorch's threads wait
    on each other at every parallel region (the demo on 2 cores with 1 worker: 2 threads
    trained ~4x slower than 1 while another job shared the machine)."""
    cores = cores if cores is not None else torch.get_num_threads()  # default: physical cores
    return max(1, cores - workers)


class Normalize(torch.nn.Module):
    """uint8 NCHW on the device -> normalised float, in the model's memory format."""

    def __init__(self, device: torch.device, channels_last: bool = False) -> None:
        super().__init__()
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("mean", torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)
