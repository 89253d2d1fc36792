"""One process or many under torchrun: initialisation, reductions and prediction gathering."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from epochscope.gather import gather_to_rank0, order_by_index


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK (or SLURM's) -> a process group; else one
    process. The device is set before the group starts, as NCCL needs."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    elif "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1 and "MASTER_ADDR" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local = int(env.get("SLURM_LOCALID", "0"))
        env.setdefault("MASTER_PORT", "29500")
    else:
        return DistInfo(0, 1, 0, pick_device(device_preference))
    device = pick_device(device_preference, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world, device_id=device if backend == "nccl" else None
        )
    return DistInfo(rank, world, local, device)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum counters over all ranks (a no-op in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_predictions(
    indices: np.ndarray, num_samples: int, **arrays: np.ndarray
) -> dict[str, np.ndarray] | None:
    """Gather ``(indices, arrays)`` from every rank to rank 0, in index order, once each."""
    parts = gather_to_rank0((np.asarray(indices), {k: np.asarray(v) for k, v in arrays.items()}))
    if parts is None:
        return None
    all_idx = np.concatenate([p[0] for p in parts])
    merged = {k: np.concatenate([p[1][k] for p in parts]) for k in arrays}
    return order_by_index(all_idx, num_samples, **merged)
