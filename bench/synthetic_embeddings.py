"""Synthetic penultimate features shaped like a classifier's, for tests and benchmarks.

Images of a class gather around their class's centre, and classes around their band's, more
tightly as the epochs go by, the way a training network's features separate; nothing here
claims to be a real model's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from epochscope.embeddings import embed
from epochscope.run import open_run
from epochscope.writer import RunWriter

# centres' spread against unit noise: at the last epoch the bands' silhouette is about 0.35 and
# at a third of the way about 0.04 (1,000 WordNet classes, 256 features): a map that forms
BAND_SPREAD = 0.7
CLASS_SPREAD = 0.5


def features(
    labels: np.ndarray,
    class_bands: list[str],
    progress: float,
    dims: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """float32 [N, dims]: noise plus ``progress`` (0..1) times the band and class centres."""
    rng = np.random.default_rng(seed)
    names = sorted(set(class_bands))
    band_of_class = np.array([names.index(b) for b in class_bands])
    band_centre = rng.normal(size=(len(names), dims)) * BAND_SPREAD
    class_centre = rng.normal(size=(len(class_bands), dims)) * CLASS_SPREAD
    noise = np.random.default_rng(seed + 1).normal(size=(len(labels), dims))
    centres = band_centre[band_of_class[labels]] + class_centre[labels]
    return (noise + progress * centres).astype(np.float32)


def write_embeddings(run_dir: Path, dims: int = 64, separate: bool = True, seed: int = 0) -> None:
    """Embeddings for every epoch with predictions: bands drawing apart over the epochs
    (``separate``), or noise throughout."""
    run = open_run(run_dir)
    bands = run.bands if run.has_bands else [str(c) for c in range(run.num_classes)]
    epochs = run.epochs
    writer = RunWriter(run_dir)
    for i, e in enumerate(epochs):
        progress = (i + 1) / len(epochs) if separate else 0.0
        writer.write_embeddings(e, embed(features(run.labels, bands, progress, dims, seed)))
