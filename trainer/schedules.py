"""Learning-rate schedules as multipliers of the base rate over (fractional) epochs.

The seed's two: ``factor`` (multiply by a factor at the end of every epoch) and ``step``
(constant, multiplied by ``gamma`` at given epochs); plus ``cosine`` and ``constant``. Any of
them can start with a linear warm-up. The trainer steps the schedule every optimizer step with
``epoch = step / steps_per_epoch``, so warm-up is smooth while the seed's schedules still change
only at epoch boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from trainer.options import SCHEDULES  # the names, defined once for both engines


@dataclass(frozen=True)
class Schedule:
    name: str = "step"
    epochs: int = 30
    factor: float = 0.94  # "factor": lr multiplier applied after every epoch
    milestones: Sequence[int] = field(default=(10, 20))  # "step": epochs where lr drops
    gamma: float = 0.1  # "step": the drop
    warmup_epochs: float = 0.0
    warmup_start: float = 0.1  # warm-up begins at this fraction of the base rate
    min_factor: float = 0.0  # "cosine": the floor, as a fraction of the base rate

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(
                f"unknown lr schedule {self.name!r}; choose from: {', '.join(SCHEDULES)}"
            )

    def __call__(self, epoch: float) -> float:
        """The multiplier of the base rate at ``epoch`` (0 = start of training)."""
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            t = epoch / self.warmup_epochs
            return self.warmup_start + (1.0 - self.warmup_start) * t
        done = math.floor(epoch + 1e-9)  # whole epochs finished
        if self.name == "factor":
            return self.factor**done
        if self.name == "step":
            return self.gamma ** sum(done >= m for m in self.milestones)
        if self.name == "cosine":
            span = max(self.epochs - self.warmup_epochs, 1e-9)
            t = min(max(epoch - self.warmup_epochs, 0.0) / span, 1.0)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step scheduler following ``schedule``."""
    steps = max(1, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step / steps))
