"""Validation outputs of a distributed job, gathered to rank 0 in validation order.

``DistributedSampler`` gives each rank a strided share of the validation set and pads the last
round with repeats of the first indices so every rank gets the same count. Each rank passes its
outputs with the dataset indices they belong to; rank 0 gets every row once, in index order.
torch is imported only when a process group is running.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def order_by_index(
    indices: np.ndarray, num_samples: int, **arrays: np.ndarray
) -> dict[str, np.ndarray]:
    """Rows sorted by sample index with each index kept once.

    DistributedSampler pads the last round with repeats of the first indices so every rank gets
    the same count; those repeats are dropped here, and a missing index is an error.
    """
    indices = np.asarray(indices)
    unique, first = np.unique(indices, return_index=True)  # sorted, first occurrence of each
    if len(unique) != num_samples or (
        num_samples and (unique[0] != 0 or unique[-1] != num_samples - 1)
    ):
        raise RuntimeError(
            f"gathered predictions cover {len(unique)} of {num_samples} validation images"
        )
    return {name: np.asarray(a)[first] for name, a in arrays.items()}


def _dist() -> Any | None:
    """torch.distributed when a process group is running, else None (torch never imported
    here: a program that uses torch.distributed has imported torch already)."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: the running process group's, else (0, 1)."""
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array of a numpy array, list or torch tensor (any device, any float dtype)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu()
        if value.dtype.is_floating_point:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def gather_to_rank0(value: Any) -> list[Any] | None:
    """Every rank's ``value`` (picklable) in rank order on rank 0, None on the others; ``[value]``
    in a single process. Every rank must call it."""
    dist = _dist()
    if dist is None:
        return [value]
    parts: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, parts, dst=0)
    return parts


def gather_logits(logits: Any, indices: Any, num_samples: int) -> np.ndarray | None:
    """This rank's validation logits ``[n, C]`` with their dataset ``indices`` ``[n]`` ->
    all ``num_samples`` rows in index order on rank 0 (padding repeats dropped), None on the
    other ranks. In a single process it only orders the rows. Every rank must call it."""
    logits, indices = to_numpy(logits), to_numpy(indices).astype(np.int64).reshape(-1)
    if logits.ndim != 2 or len(logits) != len(indices):
        raise ValueError(
            f"logits {list(logits.shape)} and indices {list(indices.shape)}: "
            "expected [n, classes] and [n]"
        )
    dist = _dist()
    if dist is None:
        return order_by_index(indices, num_samples, logits=logits)["logits"]
    parts: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object((indices, logits), parts, dst=0)
    if parts is None:
        return None
    all_idx = np.concatenate([p[0] for p in parts])
    all_logits = np.concatenate([p[1] for p in parts])
    return order_by_index(all_idx, num_samples, logits=all_logits)["logits"]
