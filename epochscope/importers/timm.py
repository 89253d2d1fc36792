"""``python -m epochscope import timm OUTPUT_DIR``: a timm train.py output folder as a run.

Reads ``summary.csv`` (epoch, train_loss, eval_loss, eval_top1, eval_top5 in percent, lr, ...;
timm's epochs count from 0) and ``args.yaml`` (model, num_classes, img_size, mean, std, epochs,
batch_size, ... into run.json). With ``--topk FILE`` (timm inference.py's output: a CSV of
``filename`` and the top-k class indices, as ``index`` lists or one column each) and
``--val-dir`` (the validation ImageFolder the file was made from), that checkpoint's top-5
becomes the predictions of ``--topk-epoch`` (default: the last epoch), so the confusion matrix
and drill-down work. timm itself is never imported.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

import epochscope
from epochscope.importers import NotThatKind
from epochscope.importers.common import add_output_options, fraction, run_name

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif"}


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m epochscope import timm")
    p.description = (
        "Import a timm train.py output folder (summary.csv, args.yaml) as an Epochscope run: "
        "its curves, and with --topk/--val-dir the confusion matrix of one checkpoint."
    )
    p.add_argument("folder", type=Path, metavar="OUTPUT_DIR", help="timm's output/train/NAME")
    add_output_options(p)
    p.add_argument(
        "--topk", type=Path, metavar="FILE",
        help="top-k CSV from timm's inference.py for the validation set",
    )  # fmt: skip
    p.add_argument(
        "--val-dir", type=Path, metavar="DIR",
        help="the validation ImageFolder (class folders) --topk was made from",
    )  # fmt: skip
    p.add_argument(
        "--topk-epoch", type=int, metavar="N",
        help="the epoch (1-based) whose checkpoint --topk scored (default: last)",
    )  # fmt: skip
    return p


def read_args_yaml(path: Path) -> dict[str, Any]:
    """timm's args.yaml: PyYAML when installed, else its flat ``key: value`` lines."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        import yaml
    except ImportError:
        out: dict[str, Any] = {}
        for line in text.splitlines():
            m = re.match(r"^([A-Za-z_][\w-]*):\s*(.*)$", line)
            if m:
                out[m[1]] = _scalar(m[2])
        return out
    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else {}


def _scalar(text: str) -> Any:
    text = text.strip()
    if text in ("null", "~", ""):
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text.strip("'\"")


def read_summary(path: Path) -> list[dict[str, float]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "epoch" not in rows[0]:
        raise NotThatKind(f"{path} has no 'epoch' column: not a timm summary.csv")
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                continue
        out.append(parsed)
    return out


def _triple(value: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(value, list | tuple) and len(value) == 3:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    return default


def _image_size(args: dict[str, Any]) -> int:
    for key in ("img_size", "input_size"):
        v = args.get(key)
        if isinstance(v, int):
            return v
        if isinstance(v, list) and v and isinstance(v[-1], int):
            return v[-1]
    return 224


def val_samples(val_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """ImageFolder order, as timm's ImageDataset reads it: class folders sorted, files sorted."""
    classes = sorted(d.name for d in val_dir.iterdir() if d.is_dir())
    samples = [
        (str(p), i)
        for i, c in enumerate(classes)
        for p in sorted((val_dir / c).rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, samples


def read_topk(path: Path) -> dict[str, list[int]]:
    """filename -> top-k class indices, from inference.py's CSV (either layout)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    out: dict[str, list[int]] = {}
    if "filename" in header:
        fi = header.index("filename")
        if "index" in header:  # newer timm: one column holding the list, "[281, 282, ...]"
            ii = header.index("index")
            for r in rows[1:]:
                out[r[fi]] = [int(v) for v in re.findall(r"-?\d+", r[ii])]
        else:  # one column per rank: index_0, index_1, ... or any other numeric columns
            cols = [i for i, h in enumerate(header) if i != fi and h.startswith(("index", "top"))]
            for r in rows[1:]:
                out[r[fi]] = [int(float(r[i])) for i in cols]
    else:  # older timm: no header, filename then the indices
        for r in rows:
            out[r[0]] = [int(v) for v in r[1:] if v.strip()]
    if not out:
        raise ValueError(f"{path} holds no rows")
    return out


def import_timm(ns: argparse.Namespace) -> Path:
    folder: Path = ns.folder
    summary = folder / "summary.csv"
    if not folder.is_dir() or not summary.is_file():
        raise NotThatKind(f"{folder} is not a timm output folder (no summary.csv)")
    rows = read_summary(summary)
    args = read_args_yaml(folder / "args.yaml")
    num_classes = args.get("num_classes")
    classes: list[str]
    samples: list[tuple[str, int]] | None = None
    if ns.val_dir:
        classes, samples = val_samples(ns.val_dir)
    elif isinstance(num_classes, int) and num_classes > 0:
        classes = [f"class{i}" for i in range(num_classes)]
    else:
        classes = ["?"]  # curves only: the run has no predictions to name classes for
    if ns.topk and not ns.val_dir:
        raise ValueError("--topk needs --val-dir (the validation images and their classes)")
    size = _image_size(args)
    name = run_name(folder, ns.name)
    run = epochscope.init(
        name, ns.runs_dir, classes=classes, val_images=samples, image_size=size,
        mean=_triple(args.get("mean"), epochscope.records.IMAGENET_MEAN),
        std=_triple(args.get("std"), epochscope.records.IMAGENET_STD),
        hparams={k: v for k, v in args.items() if isinstance(v, str | int | float | bool)},
        epochs=int(args.get("epochs") or len(rows)), arch=str(args.get("model") or "timm"),
        batch_size=int(args.get("batch_size") or 0), resume=ns.resume,
    )  # fmt: skip
    with run:
        last = max(int(r["epoch"]) + 1 for r in rows if "epoch" in r)
        topk_epoch = ns.topk_epoch or last
        for r in sorted(rows, key=lambda r: r.get("epoch", 0)):
            epoch = int(r["epoch"]) + 1  # timm counts epochs from 0
            if epoch in run.epochs_logged:
                continue
            if ns.topk and epoch == topk_epoch:
                _log_topk(run, epoch, read_topk(ns.topk), samples or [], len(classes))
            extra = {
                k: v for k, v in r.items()
                if k not in ("epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr")
            }  # fmt: skip
            run.log_epoch(
                epoch,
                train_loss=r.get("train_loss"),
                val_loss=r.get("eval_loss"),
                val_top1=fraction(r["eval_top1"]) if "eval_top1" in r else None,
                val_top5=fraction(r["eval_top5"]) if "eval_top5" in r else None,
                lr=r.get("lr"),
                epoch_seconds=0.0,
                **{re.sub(r"\W+", "_", k): v for k, v in extra.items()},
            )
    return run.dir


def _log_topk(
    run: epochscope.Run, epoch: int, topk: dict[str, list[int]], samples: list, n: int
) -> None:
    """Top-k indices as the epoch's predictions (probabilities unknown: 1/rank, normalised)."""
    found = np.zeros((len(samples), 5), dtype=np.int64) - 1
    missing = 0
    for row, (path, _) in enumerate(samples):
        p = Path(path)
        hit = topk.get(p.name) or topk.get(f"{p.parent.name}/{p.name}") or topk.get(path)
        if hit is None:
            missing += 1
            continue
        k = min(5, len(hit))
        found[row, :k] = hit[:k]
    if missing:
        raise ValueError(f"--topk has no row for {missing} of {len(samples)} validation images")
    if found.max() >= n or (found[:, 0] < 0).any():
        raise ValueError(f"--topk holds class indices outside 0..{n - 1}")
    # logits that rank the k classes as listed (softmax of 5, 4, 3, ... for the five)
    logits = np.zeros((len(samples), n), dtype=np.float32)
    for rank in range(5):
        cols = found[:, rank]
        ok = cols >= 0
        logits[np.flatnonzero(ok), cols[ok]] = 5.0 - rank
    run.log_predictions(epoch, logits)
