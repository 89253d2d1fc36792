"""The headline figures: where each key comes from in the sections' results, and its target.

A key is a ``Stat`` dict (median, min, max, ...) plus ``target`` (text) and ``verdict``
("met", "not met", or "info" for figures reported without a target).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    name: str
    section: str
    path: tuple[str, ...]
    unit: str
    op: str = ""  # ">=", ">", "<=", "<" or "" (no target)
    target: float | None = None
    scale: float = 1.0  # e.g. bytes -> KB
    note: str = ""

    def check(self, value: float) -> str:
        if not self.op or self.target is None:
            return "info"
        ok: Callable[[float, float], bool] = {
            ">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t,
            ">": lambda v, t: v > t,
        }[self.op]  # fmt: skip
        return "met" if ok(value, self.target) else "not met"

    def target_text(self) -> str:
        return f"{self.op} {self.target:g} {self.unit}".strip() if self.op else "-"


KEYS: tuple[Key, ...] = (
    Key("trainer_vs_reference", "trainer", ("demo_model", "trainer_vs_reference"), "x", ">=",
        0.95, note="train_one_epoch / bare PyTorch loop, demo model, CPU"),
    Key("eval_capture_vs_reference", "trainer", ("demo_model", "eval_capture_vs_reference"),
        "x", ">=", 0.95, note="evaluate() with top-5 capture / bare eval loop"),
    Key("api_logged_vs_plain", "api", ("demo_model", "logged_vs_plain"), "x", ">=", 0.97,
        note="plain loop with epochscope.init logging / without, demo model and epoch, CPU"),
    Key("api_logged_vs_plain_by_parts", "api", ("demo_model", "logged_vs_plain_by_parts"), "x",
        ">=", 0.97, note="same cost from the logging calls' own clocks (steadier when shared)"),
    Key("loader_vs_train", "loader", ("demo_32px", "loader_vs_train"), "x", ">=", 1.5,
        note="1-worker loader / demo model training, 32 px demo JPEGs"),
    Key("loader_vs_train_224", "loader", ("jpeg_224px", "loader_vs_train"), "x", ">=", 1.5,
        note="same at 224 px (JPEGs and model)"),
    Key("draft_speedup_224", "loader", ("draft_500px_to_224", "draft_speedup"), "x",
        note="draft decode on / off, 500 px JPEGs to 224 px"),
    Key("draft_speedup_64", "loader", ("draft_500px_to_64", "draft_speedup"), "x",
        note="draft decode on / off, 500 px JPEGs to 64 px"),
    Key("recipe_top1_vs_reference", "recipe", ("recipe_top1_vs_reference",), "x", ">=", 1.0,
        note="trainer default / plain PyTorch loop, val top-1 after 6 epochs, real-photos-10, "
        "same model + small stem, side by side, 1 thread each"),
    Key("recipe_img_per_s_vs_reference", "recipe", ("recipe_img_per_s_vs_reference",), "x",
        ">=", 0.9, note="same runs, training img/s (trainer from JPEGs, reference from tensors)"),
    Key("recipe_top1_vs_imagenet_stem", "recipe", ("recipe_top1_vs_imagenet_stem",), "x", ">",
        1.1, note="trainer default / the reference with the ImageNet stem, val top-1"),
    Key("cached_vs_tensor_loader", "loader", ("real_photos_32px", "cached_vs_tensors"), "x",
        ">=", 0.9, note="the trainer's loader on real 32 px JPEGs (decoded once, crop + flip) / "
        "batches from tensors with the same crop, training the same model"),
    Key("prepared_vs_jpeg_loader", "loader", ("prepared_500px", "prepared_vs_jpeg"), "x", ">=",
        3.0, note="prepared store (--max-side 160) / the original 500 x 375+ JPEGs, 128 px "
        "training pipeline, 1 worker"),
    Key("confusion_full_ms", "confusion", ("reply_full_250k",), "ms", "<=", 100,
        note="full 1000 x 1000 view, 250k points"),
    Key("confusion_zoom_ms", "confusion", ("reply_zoomed_250k",), "ms", "<=", 50,
        note="zoomed to 100 x 100 classes"),
    Key("confusion_5m_ms", "confusion", ("reply_full_5M",), "ms", "<=", 250,
        note="10,000 classes, 5M points"),
    Key("confusion_epoch_switch_ms", "confusion", ("epoch_switch_full_250k",), "ms", "<=", 300,
        note="slider: an epoch never seen (read, histogram, render)"),
    Key("confusion_reply_kb", "confusion", ("reply_bytes_full_250k",), "KB", "<", 300,
        scale=1e-3, note="one zoom/pan reply"),
    Key("heatmap_reply_kb", "confusion", ("dense_heatmap_bytes",), "KB", scale=1e-3,
        note="a dense go.Heatmap of the same matrix, for comparison"),
    Key("per_class_table_ms", "confusion", ("per_class_table_1000x50k",), "ms", "<=", 100,
        note="per-class table: 1000 classes x 50,000 images, 3 epochs' figures, rows, JSON"),
    Key("difference_vs_plain", "confusion", ("difference_over_plain",), "x", "<=", 2.0,
        note="difference matrix reply (A - B, full view) / plain reply, points not cached"),
    Key("map_reply_ms", "map", ("reply_full",), "ms", "<=", 100,
        note="embedding map reply from a cached layout: 50,000 points (1,000 classes), every "
        "point drawn with datashader, figure and JSON"),
    Key("map_zoom_reply_ms", "map", ("reply_zoomed",), "ms", "<=", 100,
        note="the same, zoomed to a tenth of the map's width"),
    Key("map_layout_s", "map", ("layout_s",), "s",
        note="UMAP layout of one epoch, 50,000 x 128 embeddings, one thread (random_state)"),
    Key("map_first_view_ms", "map", ("first_view_from_cache",), "ms",
        note="a fresh worker's first map of an epoch laid out before: cache file read, "
        "KD-tree, render, JSON"),
    Key("map_silhouette_ms", "map", ("silhouette_ms",), "ms",
        note="band silhouette of one epoch (cosine, 5,000-image sample of 50,000)"),
    Key("runs_picker_ms", "picker", ("warm_ms",), "ms", "<=", 50,
        note="run picker poll, 1,000 runs x 100 epochs with steps, nothing changed (warm)"),
    Key("runs_picker_cold_ms", "picker", ("cold_ms",), "ms", "<=", 2000,
        note="the first listing of a fresh worker over the same 1,000 runs"),
    Key("runs_picker_worker_rss_mib", "picker", ("worker_rss_mib",), "MiB", "<=", 400,
        note="that gunicorn worker's resident memory after the polls"),
    Key("runs_picker_uncached_ms", "picker", ("uncached_ms",), "ms",
        note="reference: every run summarised afresh (each poll before the summary cache)"),
    Key("runs_picker_speedup", "picker", ("speedup",), "x",
        note="uncached / warm poll, same run"),
    Key("live_poll_bytes_idle", "dashboard", ("poll", "idle_bytes"), "bytes", "<=", 0,
        note="training callback reply when nothing changed (204)"),
    Key("live_poll_bytes_epoch", "dashboard", ("poll", "epoch_bytes"), "bytes", "<=", 10_000,
        note="reply when one epoch arrived (a patch, never whole figures)"),
    Key("epoch_to_screen_ms", "dashboard", ("epoch_to_screen_ms",), "ms", "<=", 2000,
        note="epoch written -> point drawn (gunicorn + Chromium)"),
    Key("classify_ms", "dashboard", ("classify", "classify_12mp_ms"), "ms", "<=", 1000,
        note="12 MP JPEG POST /api/v1/classify -> top-5"),
    Key("classify_small_ms", "dashboard", ("classify", "classify_0.3mp_ms"), "ms", "<=", 1000,
        note="0.3 MP JPEG, same"),
    Key("classify_batch_img_per_s", "dashboard", ("classify", "batch_img_per_s"), "img/s",
        note="Classifier.classify over a batch of 0.3 MP JPEGs"),
    Key("demo_threads_vs_per_core", "threads", ("auto_vs_per_core",), "x", ">=", 1.0,
        note="demo epoch-2 img/s: trainer's threads (cores - workers) / one per core"),
    Key("mxnet_vs_pytorch", "engines", ("mxnet_vs_pytorch",), "x",
        note="epoch-2 training img/s, same model, data, threads"),
    Key("label_stats_vs_eval", "labels", ("cost", "vs_eval_default_224"), "x", "<=", 0.05,
        note="label scores + temperature fit of 50,000 x 1,000 logits / evaluating 50,000 "
        "images with the trainer's default model (ResNet-18 v2, 224 px), CPU"),
    Key("label_stats_vs_demo_eval", "labels", ("cost", "vs_eval_demo_32"), "x",
        note="the same / evaluating with the demo preset's model (quarter width, 32 px)"),
    Key("label_stats_s", "labels", ("cost", "label_stats_s"), "s",
        note="label_stats on 50,000 x 1,000 float32 logits"),
    Key("planted_vs_chance", "planted", ("vs_chance",), "x", ">=", 3.0,
        note="real-photos-10, 5% of val moved to a wrong class, default recipe, 6 epochs: "
        "moved share of label_issues' top k (k = moved) / k / N"),
    Key("planted_vs_cleanlab", "planted", ("vs_cleanlab",), "x", ">=", 0.9,
        note="same share / cleanlab find_label_issues' (by self-confidence) on the ONNX "
        "model's full probabilities"),
    Key("train_errors_precision", "train_errors", ("precision",), "",
        note="real-photos-10, 10% of the training labels moved (--relabel), default recipe, "
        "6 epochs: moved share of training_label_issues' top k (k = moved)"),
    Key("train_errors_vs_chance", "train_errors", ("vs_chance",), "x", ">=", 3.0,
        note="same share / k / N"),
    Key("train_errors_vs_cleanlab_cv", "train_errors", ("vs_cleanlab_cv",), "x", ">=", 0.9,
        note="same share / cleanlab find_label_issues' on 5-fold cross-validated probabilities"),
    Key("train_errors_cost_vs_cv", "train_errors", ("cost_vs_cv",), "x",
        note="seconds of the one training that gave the ranking / of the 5 CV trainings + scoring"),
    Key("exclude_top1_gain", "train_errors", ("exclude_top1_gain",), "", ">", 0.0,
        note="val top-1 of a retrain with --exclude of the top k minus the noisy run's, same seed"),
    Key("relabel_top1_gain", "train_errors", ("relabel_top1_gain",), "",
        note="the same with --relabel of the top k to their suggested class"),
    Key("threshold_precision", "train_errors", ("threshold_precision",), "",
        note="--threshold-samples 1/11 (AUM's threshold samples): planted share of the flagged"),
    Key("threshold_recall", "train_errors", ("threshold_recall",), "",
        note="the same run: share of the planted (not made threshold samples) it flags"),
    Key("train_stats_overhead", "trainer", ("demo_model", "train_stats_overhead"), "x", ">=",
        0.98, note="train_one_epoch recording per-image training statistics / without, CPU"),
    Key("train_ranking_cold_s", "train_dynamics", ("ranking_cold_s",), "s", "<=", 1.0,
        note="a new process: training_label_issues(limit=100) over 1.28 M images, 10 epochs"),
    Key("data_map_reply_ms", "train_dynamics", ("data_map_reply_ms",), "ms", "<=", 300,
        note="the /data-map view of 1.28 M training images after the ranking: points, colours, "
        "datashader PNG and figure"),
    Key("data_map_zoom_ms", "train_dynamics", ("data_map_zoom_ms",), "ms",
        note="the next reply, a zoom into the 'hard' corner"),
    Key("data_map_click_ms", "train_dynamics", ("data_map_click_ms",), "ms",
        note="a click: the nearest of 1.28 M points, the image's card and its history over 10 "
        "epoch files"),
    Key("labels_read_ms", "labels", ("read", "read_ms"), "ms", "<=", 100,
        note="one epoch, 50,000 x 1,000, from the stored file: label issues ranked, "
        "calibration (bins, ECE, scaled, per class)"),
    Key("label_views_reply_ms", "labels", ("views", "api_unseen_ms"), "ms", "<=", 300,
        note="GET /api/v1/label-issues (100 rows) + /api/v1/calibration, an epoch of 50,000 x "
        "1,000 the worker has not seen (3-epoch window read, ranked, binned, JSON)"),
    Key("label_page_reply_ms", "labels", ("views", "page_unseen_ms"), "ms", "<=", 300,
        note="the /labels page's two callbacks (24 cards without thumbnails + reliability "
        "diagram, JSON), same epoch never seen"),
    Key("similar_query_ms", "similar", ("query", "query_ms"), "ms", "<=", 50,
        note="10 nearest of a vector among a stored epoch's 50,000 x 128 embeddings (exact "
        "cosine, the answer's rows), Run warm"),
    Key("similar_query_1m_ms", "similar", ("query_1m", "query_ms"), "ms",
        note="the exact search alone over 1,000,000 x 128 unit vectors in memory"),
    Key("embeddings_logging_vs_eval", "similar", ("logging", "vs_eval"), "x", "<=", 1.05,
        note="(evaluation + PCA, projection and write of 50,000 x 2,048 features) / "
        "evaluation of 50,000 images with ResNet-50 v1 at 224 px, CPU"),
    Key("embeddings_mb_per_epoch", "similar", ("logging", "file_mb"), "MB", "<=", 15,
        note="embeddings/epoch-NNNN.npz of 50,000 images"),
    Key("similar_knn_minus_top1", "similar_knn", ("knn_minus_top1_points",), "points", ">=", -5,
        note="real-photos-10, default recipe, 6 epochs on 400 photos per class: on 1,000 "
        "held-out photos, accuracy of the majority label of the 10 nearest validation images "
        "minus the model's top-1 accuracy (percentage points)"),
    Key("report_seconds", "report", ("full", "seconds"), "s", "<=", 30,
        note="python -m epochscope report of a synthetic 1,000-class, 50,000-image, 30-epoch "
        "run with label arrays (cold Run), this 2-core machine"),
    Key("report_mb", "report", ("full", "mb"), "MB", "<=", 15,
        note="that report's size, plotly.js (4.8 MB) inlined"),
    Key("report_lite_mb", "report", ("lite", "mb"), "MB", "<=", 3,
        note="the same with --lite (SVG curves, no per-cell read-out, 10 smaller frames)"),
    Key("s3_epoch_first_view_ratio", "storage", ("views", "s3_first_view_ratio"), "x", "<=", 3,
        note="a 50,000 x 1,000 run never seen: fresh reader of s3:// (moto, loopback) / of a "
        "local copy never read, open + top-5 confusion of one epoch"),
    Key("s3_epoch_first_view_ms", "storage", ("views", "s3_first_view_ms", "median"), "ms",
        note="that first view from the bucket (downloads the run)"),
    Key("s3_epoch_warm_view_ratio", "storage", ("views", "s3_warm_view_ratio"), "x", "<=", 1.2,
        note="the served provider's next cold Run of the mirrored run / of the local run"),
    Key("s3_epoch_warm_view_ms", "storage", ("views", "s3_warm_view_ms", "median"), "ms",
        note="that warm view"),
    Key("s3_picker_cold_ms", "storage", ("picker", "cold_ms"), "ms",
        note="the picker's summaries of 1,000 bucket runs from an empty cache"),
    Key("s3_picker_warm_ms", "storage", ("picker", "warm_ms", "median"), "ms", "<=", 50,
        note="the same within the listing interval (no request)"),
    Key("s3_idle_requests_per_min", "storage", ("idle", "reader_per_min"), "req/min", "<=", 2,
        note="a reader's requests for one watched idle live run (writer alive), after backing "
        "off; the listing (2 a minute) comes on top"),
    Key("s3_idle_writer_requests_per_min", "storage", ("idle", "writer_per_min"), "req/min",
        note="the idle writer's own (heartbeat: lease GET + PUT, head PUT)"),
    Key("s3_upload_overhead", "storage", ("upload", "overhead"), "x", ">=", 0.97,
        note="a loop logging 10,000 x 100 predictions an epoch: local runs dir time / bucket "
        "runs dir time"),
)  # fmt: skip

# the keys a run must produce (the others may be skipped, e.g. without .venv-mxnet)
# (and the recipe and planted keys, which need ../shared/data/real-photos-10)
REQUIRED = tuple(
    k.name
    for k in KEYS
    if k.section not in ("engines", "recipe", "planted", "train_errors", "similar_knn")
)


def _dig(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def extract(sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{key: {median, min, max, unit, target, verdict, note}}`` for every key found."""
    out = {}
    for key in KEYS:
        raw = _dig(sections.get(key.section), key.path)
        if isinstance(raw, (int, float)):
            raw = {"median": raw, "min": raw, "max": raw, "repeats": 1}
        if not isinstance(raw, dict) or "median" not in raw:
            skipped = _dig(sections.get(key.section), ("skipped",)) or _dig(raw, ("skipped",))
            if skipped:
                out[key.name] = {"skipped": skipped, "note": key.note}
            continue
        values = {f: raw[f] * key.scale for f in ("median", "min", "max")}
        out[key.name] = {
            **values,
            "repeats": raw.get("repeats", 1),
            "unit": key.unit,
            "target": key.target_text(),
            "verdict": key.check(values["median"]) if math.isfinite(values["median"]) else "?",
            "note": key.note,
        }
    return out
