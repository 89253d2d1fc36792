"""Settings both engines share, kept free of any framework import (MXNet runs without torch)."""

from __future__ import annotations

from typing import Any

from epochscope.layout import DEMO_MARKER
from epochscope.reader import is_synthetic_dataset

# --demo: the embedded demo dataset at 32 px, a quarter-width ResNet-18 v2: on 2 cores one
# loader worker and one compute thread train ~1,300 img/s, about 25 s an epoch with validation
# (width 0.5 trains ~530 img/s, ~50 s an epoch; see docs/performance.md)
DEMO_PRESET: dict[str, Any] = {
    # the seed's recipe (ImageNet stem) keeps the 1000-class demo at ~25 s an epoch; the
    # small-image stem learns more per epoch but costs ~10x the compute at 32 px
    "recipe": "seed",
    "arch": "resnet18_v2",
    "width": 0.25,
    "image_size": 32,
    "epochs": 30,
    "batch_size": 144,
    "lr": 0.2,
    "lr_schedule": "cosine",
    "warmup_epochs": 1.0,
    "min_crop_scale": 0.35,
    "workers": 1,
}

# options that always describe this invocation, not the run
INVOCATION_OPTIONS = frozenset(
    {"data", "runs_dir", "name", "resume", "resume_or_start", "background", "demo", "engine"}
)


# the dataset marker and its reader live in epochscope (the dashboard reads it too)
__all__ = ["DEMO_MARKER", "DEMO_PRESET", "INVOCATION_OPTIONS", "is_synthetic_dataset"]
