"""Label issues and calibration: what storing them costs at evaluation, and reading them back.

``label_stats_vs_eval``: ``epochscope.predictions.label_stats`` (per image p_label, margin,
entropy, confidence, confidence_scaled and the fitted temperature) on 50,000 x 1,000 float32
logits, over the time the trainer's evaluation takes to produce those logits: a bare forward
loop of the trainer's default model (ResNet-18 v2, width 1, 224 px, 1,000 classes), its rate
measured on a few batches in the same run, interleaved, and scaled to 50,000 images.
``label_stats_vs_demo_eval``: the same against the demo preset's quarter-width model at 32 px
(a model ~200x cheaper than the default: the worst case, reported without a target).

``labels_read_ms``: one epoch of 50,000 images x 1,000 classes from the stored file: load the
top-5 and the label arrays, rank the label issues, and the calibration (bins, ECE before and
after scaling, per class), the labels already in memory (a read model caches val_index.tsv).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.harness import stat
from epochscope import reader
from epochscope.analysis import calibration as cal
from epochscope.analysis.label_issues import EpochScores, label_issues
from epochscope.predictions import label_stats, top5_from_logits
from epochscope.writer import RunWriter
from trainer.data import cpu_threads
from trainer.models import create_model
from trainer.presets import DEMO_PRESET


def logits_like_a_model(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits whose label class leads on most rows (about 70% top-1), and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    z = rng.standard_normal((n, classes), dtype=np.float32) * 2.0
    z[np.arange(n), labels] += rng.uniform(0, 12, n).astype(np.float32)
    return z, labels


def _eval_seconds_per_image(width: float, size: int, classes: int, batch: int, batches: int):
    model = create_model("resnet18_v2", num_classes=classes, width=width)
    model = model.to(memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
        return (time.perf_counter() - t0) / (batch * batches)

    run()  # warm-up
    return run


def measure_cost(n: int, classes: int, repeats: int, eval_batches: int, eval_batch: int) -> dict:
    z, labels = logits_like_a_model(n, classes)
    references = {
        "default_224": _eval_seconds_per_image(1.0, 224, classes, eval_batch, eval_batches),
        "demo_32": _eval_seconds_per_image(DEMO_PRESET["width"], 32, classes, 144, 4),
    }
    label_stats(z, labels)  # warm-up
    stats_s: list[float] = []
    per_image: dict[str, list[float]] = {k: [] for k in references}
    for _ in range(repeats):  # interleaved: a noisy neighbour slows both sides alike
        t0 = time.perf_counter()
        label_stats(z, labels)
        stats_s.append(time.perf_counter() - t0)
        for k, fn in references.items():
            per_image[k].append(fn())
    out = {
        "config": {"rows": n, "classes": classes, "threads": torch.get_num_threads()},
        "label_stats_s": stat(stats_s, "s").as_dict(),
    }
    for k in references:
        evals = [p * n for p in per_image[k]]
        out[f"eval_{k}_s"] = stat(evals, "s").as_dict()
        out[f"vs_eval_{k}"] = stat([s / e for s, e in zip(stats_s, evals, strict=True)], "ratio")
        out[f"vs_eval_{k}"] = out[f"vs_eval_{k}"].as_dict()
    return out


def measure_read(n: int, classes: int, repeats: int) -> dict:
    z, labels = logits_like_a_model(n, classes, seed=1)
    top5, prob = top5_from_logits(z)
    stats = label_stats(z, labels)
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(Path(tmp) / "bench")
        writer.acquire()
        writer.write_predictions(1, top5, prob, **stats)
        writer.close()
        run_dir = writer.root

        def read_and_compute() -> None:
            t5, p5 = reader.load_predictions(run_dir, 1, num_rows=n, num_classes=classes)
            arrays = reader.load_label_stats(run_dir, 1, num_rows=n)
            assert arrays is not None
            epoch = EpochScores(t5, p5, arrays["p_label"], arrays["margin"])
            label_issues([epoch], labels, classes)
            cal.calibration(
                t5[:, 0], labels, arrays["confidence"], arrays["confidence_scaled"],
                float(arrays["temperature"]), groups=labels, num_groups=classes,
            )  # fmt: skip

        read_and_compute()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            read_and_compute()
            times.append((time.perf_counter() - t0) * 1000)
    return {"config": {"rows": n, "classes": classes}, "read_ms": stat(times, "ms").as_dict()}


def run(quick: bool = False) -> dict:
    # as the trainer bench: the demo setup's threads beside one loader worker (numpy is one thread)
    torch.set_num_threads(cpu_threads(DEMO_PRESET["workers"]))
    if quick:
        return {
            "cost": measure_cost(2000, 100, repeats=2, eval_batches=1, eval_batch=2),
            "read": measure_read(2000, 100, repeats=2),
        }
    return {
        "cost": measure_cost(50_000, 1000, repeats=5, eval_batches=2, eval_batch=16),
        "read": measure_read(50_000, 1000, repeats=7),
    }
