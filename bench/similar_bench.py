"""Validation embeddings and similar images: what storing them costs, how fast a query is, and
whether a photo's neighbours name its class.

Section ``similar``:

``similar_query_ms``: one query of :func:`epochscope.similar.neighbours` (k = 10, exact cosine
search and the answer's rows) against a stored epoch of 50,000 x 128 embeddings, the Run warm
(its unit vectors memoised, as a dashboard worker holds them after the first query).
``similar_query_1m_ms``: the same search over 1,000,000 x 128 (ImageNet-21k's scale), report
only; the vectors in memory as a Run holds them (512 MB of float32: above the default
EPOCHSCOPE_RUN_MEMO_MB, so a worker needs that raised to keep them).

``embeddings_logging_vs_eval``: (evaluation + the embedding's cost) / evaluation, for 50,000
validation images with 2,048 features (ResNet-50's): the cost is :func:`embed` (the PCA fitted
on 8,192 rows, the projection of all) plus writing the epoch's file, the evaluation a bare
forward loop of ResNet-50 v1 at 224 px on this machine's CPU, its rate measured on a few batches
in the same run and scaled to 50,000 images (as ``label_stats_vs_eval``).
``embeddings_mb_per_epoch``: that epoch's file.

Section ``similar_knn`` (slow: a training run; ``python -m bench --only similar_knn``):
``similar_knn_vs_top1``: on real-photos-10, the trainer's default recipe (quarter-width
ResNet-18 v2, 32 px, as the planted section) trained on 400 photos per class, validated on
the whole val folder; for 100 held-out training photos per class (never trained on, not in
validation), the share whose 10 nearest validation images' majority label is right, over the
model's own top-1 accuracy on the same photos (the same code as ``POST /api/v1/similar`` and
``/api/v1/classify``).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import fixtures
from bench.harness import stat
from epochscope import reader, similar
from epochscope.embeddings import Embeddings, Projection, embed, nearest, unit_rows
from epochscope.records import DataInfo, RunInfo
from epochscope.run import Run
from epochscope.writer import RunWriter

REAL_PHOTOS = Path(
    os.environ.get("EPOCHSCOPE_REAL_PHOTOS", fixtures.REPO.parent / "shared/data/real-photos-10")
)


# --- query time ------------------------------------------------------------------------------
def _stored_run(root: Path, n: int, dims: int, classes: int) -> Path:
    """A run directory with one epoch of ``n`` x ``dims`` embeddings (clustered by class)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    centres = rng.normal(0, 3, (classes, dims)).astype(np.float32)
    vectors = centres[labels] + rng.standard_normal((n, dims), dtype=np.float32)
    writer = RunWriter(root / "bench")
    writer.acquire()
    data = DataInfo(root="", layout="bench", num_classes=classes, num_train=0, num_val=n)
    writer.write_run_info(RunInfo(name="bench", engine="bench", engine_version="0", arch="-",
                                  epochs=1, batch_size=1, data=data, preprocess=None))  # fmt: skip
    wnids = [f"c{i}" for i in range(classes)]
    writer.write_classes(wnids, wnids)
    writer.write_val_index(
        [(f"val/c{label}/{i}.jpg", int(label)) for i, label in enumerate(labels)]
    )
    projection = Projection(np.zeros(dims, np.float32), np.eye(dims, dtype=np.float32))
    writer.write_embeddings(1, Embeddings(vectors.astype(np.float16), projection))
    writer.close()
    return writer.root


def measure_query(n: int, repeats: int, classes: int = 1000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(_stored_run(Path(tmp), n, 128, classes))
        run.unit_embeddings(1)  # warm: the first query of a worker loads and normalises
        queries = np.random.default_rng(1).standard_normal((repeats, 128), dtype=np.float32)
        similar.neighbours(run, 1, queries[0], 10)
        times = []
        for q in queries:
            t0 = time.perf_counter()
            similar.neighbours(run, 1, q, 10)
            times.append((time.perf_counter() - t0) * 1000)
        by_row = []
        for row in range(repeats):
            t0 = time.perf_counter()
            similar.neighbours(run, 1, row * 7, 10)
            by_row.append((time.perf_counter() - t0) * 1000)
    return {
        "config": {"vectors": n, "dims": 128, "k": 10},
        "query_ms": stat(times, "ms").as_dict(),
        "row_query_ms": stat(by_row, "ms").as_dict(),
    }


def measure_query_in_memory(n: int, repeats: int) -> dict:
    """The exact search alone over ``n`` x 128 unit vectors already in memory."""
    rng = np.random.default_rng(2)
    unit = unit_rows(rng.standard_normal((n, 128), dtype=np.float32))
    queries = rng.standard_normal((repeats, 128), dtype=np.float32)
    nearest(unit, queries[0], 10)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        nearest(unit, q, 10)
        times.append((time.perf_counter() - t0) * 1000)
    return {"config": {"vectors": n, "dims": 128, "k": 10}, "query_ms": stat(times, "ms").as_dict()}


# --- logging cost ----------------------------------------------------------------------------
def features_like_a_model(n: int, width: int, seed: int = 0) -> np.ndarray:
    """ReLU-like float32 features: class structure in a low-rank part, plus noise."""
    rng = np.random.default_rng(seed)
    low = rng.standard_normal((n, 64), dtype=np.float32) @ rng.standard_normal(
        (64, width), dtype=np.float32
    )
    return np.maximum(low * 0.3 + rng.standard_normal((n, width), dtype=np.float32), 0)


def _eval_seconds_per_image(batch: int, batches: int) -> Callable[[], float]:
    import torch

    from trainer.models import create_model

    model = create_model("resnet50_v1", num_classes=1000).to(memory_format=torch.channels_last)
    model = model.eval()
    x = torch.randn(batch, 3, 224, 224).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
        return (time.perf_counter() - t0) / (batch * batches)

    run()  # warm-up
    return run


def measure_logging(n: int, width: int, repeats: int, eval_batch: int, eval_batches: int) -> dict:
    features = features_like_a_model(n, width)
    per_image = _eval_seconds_per_image(eval_batch, eval_batches)
    cost, evals, sizes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(Path(tmp) / "bench")
        writer.acquire()
        for epoch in range(1, repeats + 1):  # interleaved: a noisy neighbour slows both alike
            t0 = time.perf_counter()
            path = writer.write_embeddings(epoch, embed(features))
            cost.append(time.perf_counter() - t0)
            sizes.append(path.stat().st_size)
            evals.append(per_image() * n)
        writer.close()
    import torch

    return {
        "config": {"rows": n, "features": width, "threads": torch.get_num_threads()},
        "embed_and_write_s": stat(cost, "s").as_dict(),
        "eval_resnet50_224_s": stat(evals, "s").as_dict(),
        "vs_eval": stat([(e + c) / e for c, e in zip(cost, evals, strict=True)], "ratio").as_dict(),
        "file_mb": stat([s / 1e6 for s in sizes], "MB").as_dict(),
    }


# --- neighbours against top-1 on real photos -------------------------------------------------
def split_photos(
    src: Path, dst: Path, train_per_class: int, held_per_class: int, val_per_class: int | None
) -> list[tuple[Path, int]]:
    """Link the first ``train_per_class`` training photos of each class and
    ``val_per_class`` validation photos (all when None) into ``dst``; return the next
    ``held_per_class`` training photos of each class (never trained on, not in validation) with
    their class index."""
    classes = sorted(p.name for p in (src / "val").iterdir() if p.is_dir())
    held = []
    for label, c in enumerate(classes):
        (dst / "train" / c).mkdir(parents=True)
        (dst / "val" / c).mkdir(parents=True)
        photos = sorted((src / "train" / c).iterdir())
        for f in photos[:train_per_class]:
            os.symlink(f, dst / "train" / c / f.name)
        held += [(f, label) for f in photos[train_per_class : train_per_class + held_per_class]]
        for f in sorted((src / "val" / c).iterdir())[:val_per_class]:
            os.symlink(f, dst / "val" / c / f.name)
    return held


def train_default(data: Path, runs: Path, name: str, epochs: int) -> Path:
    """The trainer's default recipe at the planted section's size (quarter width, 32 px)."""
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--runs-dir",
           str(runs), "--name", name, "--arch", "resnet18_v2", "--width", "0.25",
           "--image-size", "32", "--batch-size", "128", "--epochs", str(epochs),
           "--workers", "0", "--seed", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=fixtures.REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return runs / name


def majority(labels: list[int]) -> int:
    """The most common label, a tie going to the one met first (the nearer neighbour)."""
    counts = collections.Counter(labels)
    best = max(counts.values())
    return next(label for label in labels if counts[label] == best)


#: ``query(photo bytes) -> (the labels of its k neighbours, closest first; the model's top-1)``
Query = Callable[[bytes], tuple[list[int], int]]


def agreement(held: list[tuple[Path, int]], query: Query) -> dict:
    """kNN majority accuracy and the model's top-1 accuracy on the held-out photos."""
    knn_right = top1_right = 0
    for path, label in held:
        neighbours, top1 = query(path.read_bytes())
        knn_right += majority(neighbours) == label
        top1_right += top1 == label
    n = max(len(held), 1)
    return {"photos": len(held), "knn_top1": knn_right / n, "model_top1": top1_right / n}


def in_process_query(run_dir: Path, epoch: int, k: int = 10) -> Query:
    """What POST /api/v1/similar and /api/v1/classify do, without HTTP: the dashboard's
    Classifier (decode, model), then epochscope.similar's search."""
    from dashboard import inference

    run = Run(run_dir)
    classifier = inference.Classifier.for_run(run_dir, epoch)

    def query(data: bytes) -> tuple[list[int], int]:
        tensor = inference.decode_for_model(data, classifier.pre)[0]
        top1 = classifier.predict(tensor[None], 1)[0][0]["index"]
        features = classifier.features(tensor[None])[0]
        found = similar.neighbours(run, epoch, similar.embedding_of(run, epoch, features), k)
        return [f["label"] for f in found], top1

    return query


def measure_knn(
    work: Path, train_per_class: int, held_per_class: int, epochs: int, val_per_class=None
) -> dict:
    held = split_photos(REAL_PHOTOS, work / "photos", train_per_class, held_per_class,
                        val_per_class)  # fmt: skip
    run_dir = train_default(work / "photos", work / "runs", "knn", epochs)
    epoch = reader.model_epochs(run_dir)[-1]
    figures = agreement(held, in_process_query(run_dir, epoch))
    figures["knn_vs_top1"] = figures["knn_top1"] / max(figures["model_top1"], 1e-9)
    figures["knn_minus_top1_points"] = 100 * (figures["knn_top1"] - figures["model_top1"])
    figures["config"] = {"train_per_class": train_per_class, "held_per_class": held_per_class,
                         "epochs": epochs, "k": 10}  # fmt: skip
    return figures


def run(quick: bool = False) -> dict:
    if quick:
        return {
            "query": measure_query(2000, repeats=3, classes=20),
            "query_1m": measure_query_in_memory(20_000, repeats=3),
            "logging": measure_logging(2000, 256, repeats=1, eval_batch=2, eval_batches=1),
        }
    return {
        "query": measure_query(50_000, repeats=50),
        "query_1m": measure_query_in_memory(1_000_000, repeats=20),
        "logging": measure_logging(50_000, 2048, repeats=3, eval_batch=8, eval_batches=2),
    }


def run_knn(quick: bool = False) -> dict:
    if not REAL_PHOTOS.is_dir():
        return {"skipped": f"no real photos at {REAL_PHOTOS} (set EPOCHSCOPE_REAL_PHOTOS)"}
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            return measure_knn(Path(tmp), 20, 3, epochs=1, val_per_class=10)
        return measure_knn(Path(tmp), 400, 100, epochs=6)
