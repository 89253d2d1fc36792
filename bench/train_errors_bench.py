"""Training-set label errors on real photos: does the training-dynamics ranking find planted
ones, against cleanlab on cross-validated probabilities, and does retraining without them help?

real-photos-10 (``../shared/data/real-photos-10``, ``EPOCHSCOPE_REAL_PHOTOS`` elsewhere), 10% of
its training labels moved to another class (``python -m trainer train --relabel``: the files
stay, the labels change), the trainer's default recipe at the planted section's size
(quarter-width ResNet-18 v2, 32 px, 6 epochs, seed 0). Measured:

- ``precision``: the share of planted images among the first k of
  ``Run.training_label_issues()`` (k = the number planted), and ``chance`` (k / N).
- cleanlab's ``find_label_issues`` (ranked by self-confidence) on out-of-sample probabilities
  from 5-fold cross-validation of the same recipe: five more trainings, each without one fold
  (``--exclude``), whose last model (ONNX, onnxruntime) scores the fold it did not see.
- ``cost_vs_cv``: the seconds of the one training that gave the ranking over the seconds of the
  five cross-validation trainings and their scoring.
- ``exclude_top1_gain``: val top-1 of a retrain with ``--exclude`` of the ranking's top k (same
  seed, same noisy labels otherwise) minus the noisy run's.
- ``relabel_top1_gain``: the same with ``--relabel`` of the top k to their suggested class.
- ``threshold_precision`` / ``threshold_recall``: a run of the same recipe and noisy labels
  with ``--threshold-samples 1/11`` (AUM's threshold samples, the paper's N / (C + 1)): of the
  images its ranking flags, the planted share, and the share of the planted (those not made
  threshold samples) it flags.

The statistics' own cost is the trainer section's ``train_stats_overhead`` (in-process,
interleaved: a whole training run's timing on this box varies by more than the cost).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import fixtures
from epochscope import open_run, reader, train_labels
from epochscope.analysis.label_issues import precision_at_k
from epochscope.predictions import softmax
from epochscope.preprocess import preprocess

REAL_PHOTOS = Path(
    os.environ.get("EPOCHSCOPE_REAL_PHOTOS", fixtures.REPO.parent / "shared/data/real-photos-10")
)
SHARE = 0.10
FOLDS = 5


def train(runs: Path, name: str, epochs: int, *extra: str) -> float:
    """One training run of the recipe; returns its wall seconds."""
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(REAL_PHOTOS), "--runs-dir",
           str(runs), "--name", name, "--arch", "resnet18_v2", "--width", "0.25",
           "--image-size", "32", "--batch-size", "128", "--epochs", str(epochs),
           "--workers", "0", "--seed", "0", *extra]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=fixtures.REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"training {name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def write_paths(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def plant(work: Path, seed: int = 0) -> tuple[list[tuple[str, int]], dict[int, int]]:
    """The training set as the trainer indexes it, and SHARE of its rows -> another label."""
    from trainer.datasets import discover

    train_rows = discover(REAL_PHOTOS).train
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train_rows), round(SHARE * len(train_rows)), replace=False)
    classes = 1 + max(label for _, label in train_rows)
    return train_rows, {
        int(r): (train_rows[r][1] + int(rng.integers(1, classes))) % classes for r in chosen
    }


def fold_probabilities(run_dir: Path, rows: np.ndarray, paths: list[str]) -> np.ndarray:
    """Softmax of the run's last model on training images ``rows`` (eval preprocessing)."""
    import onnxruntime as ort

    info = reader.read_run_info(run_dir)
    last = reader.prediction_epochs(run_dir)[-1]
    session = ort.InferenceSession(
        str(reader.model_path(run_dir, last)), providers=["CPUExecutionProvider"]
    )
    x = np.stack([preprocess(REAL_PHOTOS / paths[r], info.preprocess) for r in rows])
    logits = np.concatenate(
        [session.run(None, {"input": x[i : i + 256]})[0] for i in range(0, len(x), 256)]
    )
    return softmax(logits)


def images_per_second(run_dir: Path) -> float:
    table = open_run(run_dir).epoch_events
    return float(np.median([table[e]["img_per_s"] for e in sorted(table)[1:]]))


def measure(work: Path, *, epochs: int, folds: int) -> dict:
    from cleanlab.filter import find_label_issues

    runs = work / "runs"
    train_rows, planted = plant(work)
    paths = [p for p, _ in train_rows]
    noisy_labels = np.array([planted.get(i, y) for i, (_, y) in enumerate(train_rows)])
    relabel = write_paths(work / "planted.csv", ["path", "new_label"],
                          [[paths[r], y] for r, y in sorted(planted.items())])  # fmt: skip
    k, n = len(planted), len(train_rows)

    seconds = train(runs, "noisy", epochs, "--relabel", str(relabel))
    issues = open_run(runs / "noisy").training_label_issues()
    truth = np.array(sorted(planted))
    ours = precision_at_k(issues["index"].to_numpy(), truth, k)
    data_map = open_run(runs / "noisy").data_map()
    by = {  # the other statistics of the data map, ranked alone (lowest first)
        col: precision_at_k(data_map.sort_values(col, kind="stable")["index"].to_numpy(), truth, k)
        for col in ("aum", "confidence", "correctness")
    }

    # 5-fold cross-validation: out-of-sample probabilities for every training image
    rng = np.random.default_rng(1)
    fold_of = rng.permutation(np.arange(n) % folds)
    probs = np.zeros((n, 1 + int(noisy_labels.max())), np.float32)
    cv_seconds = 0.0
    for f in range(folds):
        rows = np.flatnonzero(fold_of == f)
        excluded = write_paths(work / f"fold-{f}.csv", ["path"], [[paths[r]] for r in rows])
        kept = write_paths(work / f"fold-{f}-relabel.csv", ["path", "new_label"],
                           [[paths[r], y] for r, y in sorted(planted.items())
                            if fold_of[r] != f])  # fmt: skip
        cv_seconds += train(runs, f"fold-{f}", epochs, "--exclude", str(excluded),
                            "--relabel", str(kept), "--no-train-stats")  # fmt: skip
        start = time.perf_counter()
        probs[rows] = fold_probabilities(runs / f"fold-{f}", rows, paths)
        cv_seconds += time.perf_counter() - start
    scored = time.perf_counter()
    ranked = find_label_issues(noisy_labels, probs, return_indices_ranked_by="self_confidence")
    cv_seconds += time.perf_counter() - scored
    cleanlab = precision_at_k(ranked, truth, k)

    # close the loop: retrain without the ranking's top k
    top = issues["index"].to_numpy()[:k]
    exclude = write_paths(work / "top-k.csv", ["path"], [[paths[r]] for r in top])
    rest = write_paths(work / "rest.csv", ["path", "new_label"],
                       [[paths[r], y] for r, y in sorted(planted.items())
                        if r not in set(top.tolist())])  # fmt: skip
    train(runs, "cleaned", epochs, "--exclude", str(exclude), "--relabel", str(rest))

    def top1(name: str) -> float:
        table = open_run(runs / name).epoch_events
        return float(table[max(table)]["val_top1"])

    # or relabel them with the suggested class instead
    fixed = dict(planted)  # row -> the label it trains with (the folder's: a no-op)
    fixed.update(zip(top.tolist(), issues["suggested"].to_numpy()[:k].tolist(), strict=True))
    relabelled = write_paths(work / "relabelled.csv", ["path", "new_label"],
                             [[paths[r], y] for r, y in sorted(fixed.items())])  # fmt: skip
    train(runs, "relabelled", epochs, "--relabel", str(relabelled))

    # AUM's own cut-off: threshold samples, the paper's share N / (C + 1)
    classes = 1 + int(noisy_labels.max())
    train(runs, "threshold", epochs, "--relabel", str(relabel),
          "--threshold-samples", f"{1 / (classes + 1):.6f}")  # fmt: skip
    marked = open_run(runs / "threshold")
    flagged = marked.training_label_issues().query("flagged == True")["index"].to_numpy()
    candidates = np.setdiff1d(truth, train_labels.threshold_rows(marked))

    return {
        "config": {"images": n, "planted": k, "epochs": epochs, "folds": folds},
        "threshold_flagged": len(flagged),
        "threshold_precision": float(np.isin(flagged, truth).mean()) if len(flagged) else 0.0,
        "threshold_recall": float(np.isin(candidates, flagged).mean()),
        "chance": k / n,
        "precision": ours,
        "precision_by_statistic": by,
        "cleanlab_cv_precision": cleanlab,
        "cleanlab_flagged": len(ranked),
        "vs_chance": ours / (k / n),
        "vs_cleanlab_cv": ours / cleanlab if cleanlab > 0 else float("inf"),
        "seconds": seconds,
        "cv_seconds": cv_seconds,
        "cost_vs_cv": seconds / cv_seconds,
        "noisy_val_top1": top1("noisy"),
        "cleaned_val_top1": top1("cleaned"),
        "exclude_top1_gain": top1("cleaned") - top1("noisy"),
        "cleaned_planted_excluded": int(np.isin(top, truth).sum()),
        "relabelled_val_top1": top1("relabelled"),
        "relabel_top1_gain": top1("relabelled") - top1("noisy"),
        "relabelled_restored": int(sum(fixed[r] == train_rows[r][1] for r in planted)),
    }


def run(quick: bool = False, cache: Path | None = None) -> dict:
    if not REAL_PHOTOS.is_dir():
        return {"skipped": f"no real photos at {REAL_PHOTOS} (set EPOCHSCOPE_REAL_PHOTOS)"}
    with tempfile.TemporaryDirectory() as tmp:
        if quick:  # seven trainings on 5,000 photos: minutes even at one epoch
            return {"skipped": "--quick: this section trains seven real-photo runs; run "
                    "python -m bench --only train_errors"}  # fmt: skip
        return measure(Path(tmp), epochs=6, folds=FOLDS)
