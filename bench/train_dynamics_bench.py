"""The training-set analysis at ImageNet's size: 1.28 M training images, 1,000 classes, a run
directory written through ``RunWriter`` with synthetic training statistics for ``epochs``
epochs (2% of the labels 'wrong': their margins stay negative).

- ``ranking_cold_s``: a new process opens the run and answers
  ``Run.training_label_issues(limit=100)`` (every epoch file read, the dynamics summarised, the
  ranking sorted): the dashboard's first training-ranking reply from a cold worker.
- ``data_map_ms``: the data map's columns (``epochscope.train_labels.map_arrays``: confidence,
  variability, band for every image) once the dynamics are in the Run's memo.
- ``data_map_reply_ms``: the /data-map view's first reply after the ranking
  (``dashboard.data_map.service.map_view``: points and colours of every image, the datashader
  PNG, the figure), datashader's kernels compiled first as a worker does at start;
  ``data_map_zoom_ms`` the next reply (a zoom), ``data_map_click_ms`` a click (the nearest
  image, its card and history).
- ``file_mb``: one epoch's train_stats file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import fixtures
from epochscope.training_stats import dense
from epochscope.writer import RunWriter

COLD = """
import json, sys, time
import epochscope
from epochscope import train_labels
from dashboard.data_map import service
from dashboard.kit.points import warm_up
warm_up()  # a worker has imported the app and compiled datashader before its first request
t0 = time.perf_counter()
run = epochscope.open_run(sys.argv[1])
issues = train_labels.issue_columns(run, limit=100)
t1 = time.perf_counter()
points = train_labels.map_arrays(run)
t2 = time.perf_counter()
view = service.map_view(run, None, "band")
t3 = time.perf_counter()
zoom = service.map_view(run, None, "band", (0.0, 0.2), (0.0, 0.25))
t4 = time.perf_counter()
row = service.nearest_image(run, None, 0.1, 0.1, (zoom.grid.dx, zoom.grid.dy))
detail = service.image_detail(run, None, row if row is not None else 0)
t5 = time.perf_counter()
print(json.dumps({"ranking_s": t1 - t0, "map_s": t2 - t1, "reply_s": t3 - t2,
                  "zoom_s": t4 - t3, "click_s": t5 - t4, "rows": len(issues["index"]),
                  "points": len(points["index"]), "drawn": view.drawn,
                  "history": len(detail.history["epoch"])}))
"""


def write_run(folder: Path, images: int, classes: int, epochs: int) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, images)
    wrong = rng.uniform(size=images) < 0.02
    run_dir = folder / "big"
    writer = RunWriter(run_dir)
    writer.acquire()
    writer.write_classes([f"c{i}" for i in range(classes)], [f"class {i}" for i in range(classes)])
    writer.write_val_index([("val/0.jpg", 0)])
    writer.write_json("run.json", {"schema": 1, "name": "big", "engine": "bench",
                                   "data": {"num_classes": classes, "num_train": images,
                                            "num_val": 1}})  # fmt: skip
    writer.write_train_index([(f"train/{i}.jpg", int(y)) for i, y in enumerate(labels)])
    seen = np.arange(images)
    for epoch in range(1, epochs + 1):
        margin = rng.normal(epoch * 0.5, 1.5, images) * np.where(wrong, -1, 1)
        p = 1 / (1 + np.exp(-margin))
        other = (labels + rng.integers(1, classes, images)) % classes
        rows = {"index": seen, "p_label": p, "margin": margin, "other": other}
        writer.write_train_stats(epoch, dense(rows, images, classes))
        writer.write_npz(f"predictions/epoch-{epoch:04d}.npz", top5=np.zeros((1, 5), np.int16),
                         prob=np.zeros((1, 5), np.float16))  # fmt: skip
    writer.close()
    return run_dir


def measure(images: int, classes: int, epochs: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = write_run(Path(tmp), images, classes, epochs)
        size = (run_dir / "train_stats" / "epoch-0001.npz").stat().st_size
        answers = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", COLD, str(run_dir)], capture_output=True,
                                 text=True, cwd=fixtures.REPO, check=True)  # fmt: skip
            answers.append(json.loads(out.stdout))
    ranking = [a["ranking_s"] for a in answers]
    assert all(a["drawn"] == images and a["history"] == epochs for a in answers), answers
    ms = {k: [a[k] * 1000 for a in answers] for k in ("map_s", "reply_s", "zoom_s", "click_s")}
    return {
        "config": {"images": images, "classes": classes, "epochs": epochs},
        "file_mb": size / 1e6,
        "ranking_cold_s": _stat(ranking),
        "data_map_ms": _stat(ms["map_s"]),
        "data_map_reply_ms": _stat(ms["reply_s"]),
        "data_map_zoom_ms": _stat(ms["zoom_s"]),
        "data_map_click_ms": _stat(ms["click_s"]),
    }


def _stat(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": min(values), "max": max(values),
            "repeats": len(values)}  # fmt: skip


def run(quick: bool = False) -> dict:
    if quick:
        return measure(20_000, 100, 3, 1)
    return measure(1_281_167, 1000, 10, 3)
