"""Real photos with planted label errors: real-photos-10 with 5% of its validation images moved
into a wrong class folder, trained with the trainer's default recipe. Among the first k of the
label-issue ranking (k = the number moved), the share of moved images against chance and
against cleanlab's find_label_issues on the same model's full probabilities (the exported ONNX
model of the same epoch, run on the validation images with onnxruntime)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from epochscope import reader
from epochscope.analysis.label_issues import EpochScores, label_issues, precision_at_k
from epochscope.predictions import softmax
from epochscope.preprocess import preprocess
from tests.conftest import REPO, run_cli

PHOTOS = REPO.parent / "shared" / "data" / "real-photos-10"
if not PHOTOS.is_dir():
    PHOTOS = Path("/work/shared/data/real-photos-10")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs ../shared/data/real-photos-10"),
]


def plant(dst: Path, train_per_class: int, share: float, seed: int) -> int:
    """Link the photos into ``dst`` (``train_per_class`` training images per class, every
    validation image), moving ``share`` of the validation images into another class's folder
    under a name that says so; returns how many were moved."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in (PHOTOS / "val").iterdir() if p.is_dir())
    for c in classes:
        (dst / "train" / c).mkdir(parents=True)
        (dst / "val" / c).mkdir(parents=True)
        for f in sorted((PHOTOS / "train" / c).iterdir())[:train_per_class]:
            os.symlink(f, dst / "train" / c / f.name)
    val = [(c, f) for c in classes for f in sorted((PHOTOS / "val" / c).iterdir())]
    moved = set(rng.choice(len(val), round(share * len(val)), replace=False).tolist())
    for i, (c, f) in enumerate(val):
        if i in moved:
            wrong = classes[(classes.index(c) + int(rng.integers(1, len(classes)))) % len(classes)]
            os.symlink(f, dst / "val" / wrong / f"moved-from-{c}-{f.name}")
        else:
            os.symlink(f, dst / "val" / c / f.name)
    return len(moved)


def onnx_probabilities(run_dir: Path, epoch: int, paths: list[str], data_root: Path):
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


def test_planted_label_errors_rank_first(tmp_path: Path, output_dir: Path) -> None:
    from cleanlab.filter import find_label_issues

    data = tmp_path / "photos"
    k = plant(data, train_per_class=250, share=0.05, seed=0)
    runs = tmp_path / "runs"
    run_cli(
        "trainer", "train", "--data", str(data), "--runs-dir", str(runs), "--name", "planted",
        "--arch", "resnet18_v2", "--width", "0.25", "--image-size", "32", "--batch-size", "128",
        "--epochs", "3", "--workers", "0", "--seed", "0", timeout=1500,
    )  # fmt: skip
    run_dir = runs / "planted"
    labels, paths = reader.read_val_index(run_dir)
    moved = np.flatnonzero(["/moved-from-" in "/" + p for p in paths])
    assert len(moved) == k
    classes = len(reader.read_classes(run_dir))
    epochs = reader.prediction_epochs(run_dir)
    last = epochs[-1]

    def scores(epoch: int) -> EpochScores:
        top5, prob = reader.load_predictions(run_dir, epoch, len(labels), classes)
        arrays = reader.load_label_stats(run_dir, epoch, len(labels))
        assert arrays is not None
        return EpochScores(top5, prob, arrays["p_label"], arrays["margin"])

    ours = label_issues([scores(e) for e in epochs[-3:]], labels, classes)
    ours_last = label_issues([scores(last)], labels, classes)
    probs = onnx_probabilities(run_dir, last, paths, data)
    # the stored scores are those of the same model: the ONNX model agrees with them
    stored = reader.load_label_stats(run_dir, last, len(labels))
    p_label = probs[np.arange(len(labels)), labels]
    assert np.abs(p_label - stored["p_label"]).max() < 2e-3
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    chance = k / len(labels)
    figures = {
        "images": len(labels),
        "moved": k,
        "epochs": len(epochs),
        "val_top1": float(np.mean(probs.argmax(axis=1) == labels)),
        "chance": chance,
        "epochscope_p_at_k": precision_at_k(ours["index"], moved, k),
        "epochscope_last_epoch_p_at_k": precision_at_k(ours_last["index"], moved, k),
        "cleanlab_p_at_k": precision_at_k(ranked, moved, k),
        "cleanlab_flagged": len(ranked),
    }
    (output_dir / "planted_label_errors.json").write_text(json.dumps(figures, indent=1))
    print(figures)
    assert figures["epochscope_p_at_k"] >= 3 * chance, figures
    assert figures["epochscope_p_at_k"] >= 0.9 * figures["cleanlab_p_at_k"], figures
