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

``label_views_reply_ms``: what the dashboard answers when an epoch of that size is shown that
the worker has not seen (its predictions and label arrays dropped from the Run's memo, the
run's classes and labels kept, as the epoch slider finds them): the HTTP replies
``GET /api/v1/label-issues`` (100 rows) plus ``GET /api/v1/calibration`` through the app's
Flask server, and the /labels page's two callbacks (the cards and summary, the reliability
diagram, JSON-encoded as Dash sends them), each pair timed together. The run has no images
on disk, so the page's 24 thumbnails are not in the figure (the drill-down's cost).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.harness import stat
from bench.synthetic_runs import class_table
from epochscope import reader
from epochscope.analysis import calibration as cal
from epochscope.analysis.label_issues import EpochScores, label_issues
from epochscope.predictions import label_stats, top5_from_logits
from epochscope.records import DataInfo, RunInfo
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


def _label_run(root: Path, n: int, classes: int, epochs: int) -> Path:
    """A run directory of ``epochs`` epochs of ``n`` x ``classes`` logits with label arrays,
    ImageNet's classes (so the calibration has its bands)."""
    writer = RunWriter(root / "views")
    writer.acquire()
    table = class_table(classes)
    info = RunInfo(name="views", engine="synthetic", engine_version="0", arch="none",
                   epochs=epochs, batch_size=0, preprocess=None,
                   data=DataInfo(root="/nonexistent/data", layout="imagenet-folders",
                                 num_classes=classes, num_train=0, num_val=n))  # fmt: skip
    writer.write_run_info(info)
    writer.write_classes([w for _, w, _ in table], [name for _, _, name in table])
    labels = None
    for e in range(1, epochs + 1):
        z, y = logits_like_a_model(n, classes, seed=10)  # the same labels every epoch
        z += np.float32(0.3 * e) * (z == z.max(axis=1, keepdims=True))  # a little surer
        labels = y
        writer.write_predictions(e, *top5_from_logits(z), **label_stats(z, y))
    assert labels is not None
    writer.write_val_index([(f"val/{i:06d}.JPEG", int(lab)) for i, lab in enumerate(labels)])
    writer.close()
    return writer.root


def measure_views(n: int, classes: int, repeats: int) -> dict:
    from plotly.io.json import to_json_plotly

    from dashboard import runs
    from dashboard.confusion.service import figure_json

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = _label_run(Path(tmp), n, classes, epochs=3)
        old = os.environ.get("RUNS_DIR")
        os.environ["RUNS_DIR"] = tmp
        try:
            from dashboard.app import server
            from dashboard.labels import views as label_views

            client = server.test_client()

            def api() -> None:
                for q in ("label-issues?run=views&limit=100", "calibration?run=views"):
                    reply = client.get(f"/api/v1/{q}")
                    assert reply.status_code == 200, reply.get_data(as_text=True)[:300]

            def views() -> None:
                run = runs.at(run_dir)
                cards, _, missing = label_views.issues_view(run, 3)
                assert not missing and len(cards) == 24
                to_json_plotly([asdict(c) for c in cards])
                figure_json(label_views.reliability_view(run, 3, "all"))

            def unseen(fn) -> float:
                # the epoch never seen: its files and what is derived from them are dropped
                runs.at(run_dir).forget("predictions", "label_stats", "label_issues",
                                         "calibration", "reliability", "ece")  # fmt: skip
                t0 = time.perf_counter()
                fn()
                return (time.perf_counter() - t0) * 1000

            out: dict = {"config": {"rows": n, "classes": classes, "window_epochs": 3}}
            for name, fn in (("api", api), ("page", views)):
                unseen(fn)  # warm-up: imports, the run's classes and labels read
                cold = [unseen(fn) for _ in range(repeats)]
                warm = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn()
                    warm.append((time.perf_counter() - t0) * 1000)
                out[f"{name}_unseen_ms"] = stat(cold, "ms").as_dict()
                out[f"{name}_warm_ms"] = stat(warm, "ms").as_dict()
            sizes = [len(client.get(f"/api/v1/{q}").data) for q in
                     ("label-issues?run=views&limit=100", "calibration?run=views")]  # fmt: skip
            out["api_reply_bytes"] = {"label_issues_100": sizes[0], "calibration": sizes[1]}
        finally:
            if old is None:
                os.environ.pop("RUNS_DIR", None)
            else:
                os.environ["RUNS_DIR"] = old
    return out


def run(quick: bool = False) -> dict:
    # as the trainer bench: the demo setup's threads beside one loader worker (numpy is one thread)
    torch.set_num_threads(cpu_threads(DEMO_PRESET["workers"]))
    if quick:
        return {
            "cost": measure_cost(2000, 100, repeats=2, eval_batches=1, eval_batch=2),
            "read": measure_read(2000, 100, repeats=2),
            "views": measure_views(2000, 100, repeats=2),
        }
    return {
        "cost": measure_cost(50_000, 1000, repeats=5, eval_batches=2, eval_batch=16),
        "read": measure_read(50_000, 1000, repeats=7),
        "views": measure_views(50_000, 1000, repeats=7),
    }
