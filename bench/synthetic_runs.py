"""Synthetic predictions shaped like a classifier's, for tests and benchmarks.

Wrong guesses fall more often near the true class in WordNet as the epochs go by, the way a
trained network's do; nothing here claims to be a real model's output. Classes beyond the
catalogue's 1000 (10,000-class benchmarks) get made-up ids and guesses within blocks of 10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from epochscope.catalogue import load_catalogue
from epochscope.records import DataInfo, RunInfo
from epochscope.writer import RunWriter


def class_table(num_classes: int) -> list[tuple[int, str, str]]:
    """(index, wnid, name): ImageNet classes spread over WordNet, then made-up ones."""
    cat = load_catalogue()
    if num_classes <= len(cat):
        # every k-th class of the display order: all bands represented
        picks = cat.order[np.linspace(0, len(cat) - 1, num_classes).round().astype(int)]
        chosen = sorted(int(i) for i in picks)
        return [(j, cat.classes[i].wnid, cat.classes[i].name) for j, i in enumerate(chosen)]
    return [(j, f"x{j:07d}", f"class {j}") for j in range(num_classes)]


def predictions(
    labels: np.ndarray,
    num_classes: int,
    skill: float,
    related: float,
    neighbours: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """top5 int16 [N, 5] and prob float16 [N, 5].

    ``skill``: chance the true class is the first guess; ``related``: chance a wrong guess is
    one of the true class's nearest classes (``neighbours[c]``) rather than any class.
    """
    n = len(labels)
    k = neighbours.shape[1]
    near = neighbours[labels[:, None], rng.integers(0, k, (n, 5))]
    anywhere = rng.integers(0, num_classes, (n, 5))
    top5 = np.where(rng.random((n, 5)) < related, near, anywhere)
    correct = rng.random(n) < skill
    top5[correct, 0] = labels[correct]
    # the true class sometimes in places 2-5
    second = ~correct & (rng.random(n) < skill)
    top5[second, rng.integers(1, 5)] = labels[second]
    prob = np.sort(rng.dirichlet(np.ones(6) * 0.7, n)[:, :5], axis=1)[:, ::-1]
    return top5.astype(np.int16), prob.astype(np.float16)


def neighbour_table(wnids: list[str], k: int = 8) -> np.ndarray:
    """int [C, k]: the k classes nearest in WordNet (blocks of 10 for made-up ids)."""
    c = len(wnids)
    cat = load_catalogue()
    if all(w in cat for w in wnids):
        dist = cat.distance_matrix(wnids).astype(np.float32)
        np.fill_diagonal(dist, 1e6)
        jitter = np.random.default_rng(0).random(dist.shape) * 0.1
        return np.argsort(dist + jitter, axis=1)[:, :k]
    base = (np.arange(c) // 10) * 10
    return np.minimum(base[:, None] + np.arange(10)[None, :k], c - 1)


def write_run(
    run_dir: Path,
    num_classes: int = 20,
    per_class: int = 10,
    epochs: int = 3,
    data_root: Path | None = None,
    seed: int = 0,
) -> Path:
    """A run directory with classes, validation index and predictions (no training files)."""
    rng = np.random.default_rng(seed)
    writer = RunWriter(run_dir)
    classes = class_table(num_classes)
    wnids = [w for _, w, _ in classes]
    labels = np.repeat(np.arange(num_classes), per_class)
    paths = [f"val/{wnids[lab]}/{i:06d}.png" for i, lab in enumerate(labels)]
    writer.write_run_info(
        RunInfo(
            name=writer.root.name,
            engine="synthetic",
            engine_version="0",
            arch="none",
            epochs=epochs,
            batch_size=0,
            preprocess=None,
            data=DataInfo(
                root=str(data_root) if data_root else "/nonexistent/data",
                layout="imagenet-folders",
                num_classes=num_classes,
                num_train=0,
                num_val=len(labels),
            ),
        )
    )
    writer.write_classes(wnids, [n for _, _, n in classes])
    writer.write_val_index(list(zip(paths, labels.tolist(), strict=True)))
    neighbours = neighbour_table(wnids)
    for e in range(1, epochs + 1):
        progress = e / epochs
        top5, prob = predictions(
            labels,
            num_classes,
            skill=0.2 + 0.6 * progress,
            related=0.2 + 0.7 * progress,
            neighbours=neighbours,
            rng=rng,
        )
        writer.write_predictions(e, top5, prob)
    return writer.root
