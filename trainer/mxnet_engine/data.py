"""Datasets, the image pipeline and a batch loader for the MXNet engine: numpy and Pillow only.

Layouts (``discover``) and the decode/augment pipeline are the PyTorch engine's, from the
torch-free :mod:`trainer.datasets`; this module adds only the MXNet engine's batch loader.

The loader decodes batches in spawned worker processes (they never import MXNet) and keeps a
bounded number of batches in flight. Each batch is seeded from (seed, epoch, batch number), so a
resumed epoch sees the same images and crops whatever the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from epochscope.records import resize_size_for
from trainer.datasets import (
    IMAGE_ERRORS,
    MEAN,
    STD,
    DataError,
    DatasetIndex,
    Pipeline,
    discover,
    eval_pipeline,
    kept_rows,
    train_pipeline,
)

__all__ = [
    "MEAN",
    "STD",
    "BatchLoader",
    "DataError",
    "DatasetIndex",
    "Pipeline",
    "discover",
    "load_batch",
    "make_pipeline",
    "resize_size_for",
]


def make_pipeline(image_size: int, train: bool, min_scale: float = 0.08) -> Pipeline:
    """The PyTorch engine's pipelines: random resized crop + flip, or resize + centre crop."""
    return train_pipeline(image_size, min_scale) if train else eval_pipeline(image_size)


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
        # an excluded training row (--exclude) is never sampled; its row number stays
        order = kept_rows(self.index) if split == "train" else np.arange(len(samples))
        if shuffle:
            order = np.random.default_rng(seed).permutation(order)
        count = len(order) // batch_size if shuffle else math.ceil(len(order) / batch_size)
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
