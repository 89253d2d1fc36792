"""The offline HTML report (``python -m epochscope report``) of a large run: seconds to write it
and what it weighs, full and ``--lite``, and which parts take the space.

The run is synthetic (bench.synthetic_runs): 1,000 classes spread over WordNet, 50 validation
images each (50,000), 30 epochs of top-5 predictions whose wrong guesses grow related over the
epochs, the label arrays of every epoch (from the stored top-5 probabilities; no logits), and
an epoch event per epoch. No images, embeddings or models: the report of a real run adds the
label-issue thumbnails (24 JPEGs of at most 96 px, ~2-4 KB each) and any --photo cards.
Each repeat opens the run afresh (a cold Run: every file read and every matrix computed).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import stat
from bench.synthetic_runs import write_run
from epochscope import open_run
from epochscope.reader import load_predictions, read_val_index
from epochscope.report import build_report
from epochscope.writer import RunWriter


def _label_arrays(top5: np.ndarray, prob: np.ndarray, labels: np.ndarray) -> dict:
    """Label arrays consistent with the stored top-5 (the rest of each row's mass spread)."""
    prob = prob.astype(np.float32)
    hit = top5 == labels[:, None]
    rest = np.clip(1 - prob.sum(axis=1), 1e-6, 1) / 995
    p_label = np.where(hit.any(axis=1), (prob * hit).sum(axis=1), rest)
    best_other = np.where(hit[:, 0], prob[:, 1], prob[:, 0])
    entropy = -(prob * np.log(np.maximum(prob, 1e-9))).sum(axis=1)
    return {
        "p_label": p_label, "margin": p_label - best_other, "entropy": entropy,
        "confidence": prob[:, 0], "confidence_scaled": np.sqrt(prob[:, 0]),
        "temperature": np.float32(1.3),
    }  # fmt: skip


def make_run(folder: Path, classes: int, per_class: int, epochs: int) -> Path:
    run_dir = write_run(folder / "report-bench", classes, per_class, epochs)
    labels, _ = read_val_index(run_dir)
    writer = RunWriter(run_dir)
    lines = []
    for e in range(1, epochs + 1):
        top5, prob = load_predictions(run_dir, e, len(labels), classes)
        writer.write_predictions(e, top5, prob, **_label_arrays(top5, prob, labels))
        top1 = float((top5[:, 0] == labels).mean())
        top5_acc = float((top5 == labels[:, None]).any(axis=1).mean())
        lines.append({"kind": "epoch", "time": 1_764_000_000.0 + 600 * e, "epoch": e,
                      "train_loss": 5 / e, "val_loss": 5.5 / e, "train_top1": top1 * 1.05,
                      "val_top1": top1, "train_top5": min(1, top5_acc * 1.02),
                      "val_top5": top5_acc, "lr": 0.1 / e})  # fmt: skip
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run_dir


def parts(html: str) -> dict[str, float]:
    """MB of each section's HTML (without the JSON blocks inside it), each JSON block and the
    inlined scripts."""
    out: dict[str, float] = {}
    for m in re.finditer(r'<section id="([a-z-]+)">(.*?)</section>', html, re.S):
        text = re.sub(r"<script type=\"application/json\".*?</script>", "", m.group(0), flags=re.S)
        out[f"section {m.group(1)}"] = len(text.encode()) / 1e6
    for m in re.finditer(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html,
                         re.S):  # fmt: skip
        out[f"data {m.group(1)}"] = len(m.group(0).encode()) / 1e6
    for i, m in enumerate(re.finditer(r"<script>(.*?)</script>", html, re.S)):
        out["plotly.js" if "plotly.js v" in m.group(1)[:200] else f"script {i}"] = (
            len(m.group(0).encode()) / 1e6
        )
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def run(quick: bool = False) -> dict:
    classes, per_class, epochs = (100, 10, 4) if quick else (1000, 50, 30)
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp), classes, per_class, epochs)
        results: dict = {"run": {"classes": classes, "images": classes * per_class,
                                 "epochs": epochs}}  # fmt: skip
        for name, lite in (("full", False), ("lite", True)):
            seconds, html = [], ""
            for _ in range(repeats):
                t0 = time.perf_counter()
                html = build_report(open_run(run_dir), lite=lite)
                seconds.append(time.perf_counter() - t0)
            results[name] = {
                "seconds": stat(seconds, "s").as_dict(),
                "mb": len(html.encode("utf-8")) / 1e6,
                "parts_mb": parts(html),
            }
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=1))
