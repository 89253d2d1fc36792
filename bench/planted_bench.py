"""Planted label errors on real photos: does the label-issue ranking find them?

real-photos-10 (``../shared/data/real-photos-10``, ``EPOCHSCOPE_REAL_PHOTOS`` elsewhere) with 5%
of its validation images moved into a wrong class folder, trained with the trainer's default
recipe (``python -m trainer train``, quarter-width ResNet-18 v2 at 32 px as the recipe section,
6 epochs). Among the first k of ``label_issues`` (k = the number moved; the last three epochs'
stored arrays) the share of moved images, against chance (k / N) and against cleanlab's
``find_label_issues`` ranked by self-confidence on the same model's full probabilities (the
last epoch's exported ONNX model run with onnxruntime on the validation images). Keys:
``planted_vs_chance``, ``planted_vs_cleanlab``. Needs cleanlab (requirements-dev.txt).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import fixtures
from epochscope import reader
from epochscope.analysis.label_issues import EpochScores, label_issues, precision_at_k
from epochscope.predictions import softmax
from epochscope.preprocess import preprocess

REAL_PHOTOS = Path(
    os.environ.get("EPOCHSCOPE_REAL_PHOTOS", fixtures.REPO.parent / "shared/data/real-photos-10")
)
MOVED_PREFIX = "moved-from-"


def plant(
    src: Path,
    dst: Path,
    train_per_class: int | None,
    share: float,
    seed: int,
    val_per_class: int | None = None,
) -> int:
    """Link the photos of ``src`` into ``dst`` (``train_per_class`` training and
    ``val_per_class`` validation images per class, all when None), moving ``share`` of the
    validation images into another class's folder under a name starting with
    :data:`MOVED_PREFIX`; returns how many."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in (src / "val").iterdir() if p.is_dir())
    for c in classes:
        (dst / "train" / c).mkdir(parents=True)
        (dst / "val" / c).mkdir(parents=True)
        for f in sorted((src / "train" / c).iterdir())[:train_per_class]:
            os.symlink(f, dst / "train" / c / f.name)
    val = [(c, f) for c in classes for f in sorted((src / "val" / c).iterdir())[:val_per_class]]
    moved = set(rng.choice(len(val), round(share * len(val)), replace=False).tolist())
    for i, (c, f) in enumerate(val):
        if i in moved:
            wrong = classes[(classes.index(c) + int(rng.integers(1, len(classes)))) % len(classes)]
            os.symlink(f, dst / "val" / wrong / f"{MOVED_PREFIX}{c}-{f.name}")
        else:
            os.symlink(f, dst / "val" / c / f.name)
    return len(moved)


def onnx_probabilities(run_dir: Path, epoch: int, paths: list[str], data_root: Path) -> np.ndarray:
    """Softmax of the epoch's exported model on the validation images (the run's preprocess)."""
    import onnxruntime as ort

    info = reader.read_run_info(run_dir)
    session = ort.InferenceSession(
        str(reader.model_path(run_dir, epoch)), providers=["CPUExecutionProvider"]
    )
    x = np.stack([preprocess(data_root / p, info.preprocess) for p in paths])
    logits = np.concatenate(
        [session.run(None, {"input": x[i : i + 256]})[0] for i in range(0, len(x), 256)]
    )
    return softmax(logits)


def measure(
    work: Path,
    *,
    train_per_class: int | None,
    epochs: int,
    width: float = 0.25,
    val_per_class: int | None = None,
) -> dict:
    """Plant, train, rank; the figures (shares are precision at k)."""
    from cleanlab.filter import find_label_issues

    data = work / "photos"
    k = plant(REAL_PHOTOS, data, train_per_class, 0.05, 0, val_per_class)
    runs = work / "runs"
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--runs-dir",
           str(runs), "--name", "planted", "--arch", "resnet18_v2", "--width", str(width),
           "--image-size", "32", "--batch-size", "128", "--epochs", str(epochs),
           "--workers", "0", "--seed", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=fixtures.REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {proc.stderr[-2000:]}")
    run_dir = runs / "planted"
    labels, paths = reader.read_val_index(run_dir)
    moved = np.flatnonzero([Path(p).name.startswith(MOVED_PREFIX) for p in paths])
    classes = len(reader.read_classes(run_dir))
    stored = reader.prediction_epochs(run_dir)

    def scores(epoch: int) -> EpochScores:
        top5, prob = reader.load_predictions(run_dir, epoch, len(labels), classes)
        arrays = reader.load_label_stats(run_dir, epoch, len(labels))
        if arrays is None:
            raise RuntimeError(f"epoch {epoch}'s predictions hold no label arrays")
        return EpochScores(top5, prob, arrays["p_label"], arrays["margin"])

    ours = label_issues([scores(e) for e in stored[-3:]], labels, classes)
    ours_last = label_issues([scores(stored[-1])], labels, classes)
    probs = onnx_probabilities(run_dir, stored[-1], paths, data)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    p_ours = precision_at_k(ours["index"], moved, len(moved))
    p_cleanlab = precision_at_k(ranked, moved, len(moved))
    chance = len(moved) / len(labels)
    last_arrays = reader.load_label_stats(run_dir, stored[-1], len(labels))
    return {
        "config": {
            "train_per_class": train_per_class,
            "epochs": epochs,
            "width": width,
            "images": len(labels),
            "moved": k,
        },
        "val_top1": float(np.mean(probs.argmax(axis=1) == labels)),
        "chance": chance,
        "epochscope_p_at_k": p_ours,
        "epochscope_last_epoch_p_at_k": precision_at_k(ours_last["index"], moved, len(moved)),
        "cleanlab_p_at_k": p_cleanlab,
        "cleanlab_flagged": len(ranked),
        "vs_chance": p_ours / chance,
        "vs_cleanlab": p_ours / p_cleanlab if p_cleanlab > 0 else float("inf"),
        # the stored p_label against the ONNX model's: the same model's figures
        "stored_vs_onnx_max_diff": float(
            np.abs(probs[np.arange(len(labels)), labels] - last_arrays["p_label"]).max()
        ),
    }


def run(quick: bool = False, cache: Path | None = None) -> dict:
    if not REAL_PHOTOS.is_dir():
        return {"skipped": f"no real photos at {REAL_PHOTOS} (set EPOCHSCOPE_REAL_PHOTOS)"}
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            return measure(Path(tmp), train_per_class=20, epochs=1, val_per_class=20)
        return measure(Path(tmp), train_per_class=None, epochs=6)
