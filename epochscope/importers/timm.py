"""``python -m epochscope import timm OUTPUT_DIR``: a timm train.py output folder as a run.

Reads ``summary.csv`` (epoch, train_loss, eval_loss, eval_top1, eval_top5 in percent, lr, ...;
timm's epochs count from 0) and ``args.yaml`` (model, num_classes, img_size, mean, std, epochs,
batch_size, ... into run.json). With ``--topk FILE`` (timm inference.py's output: a CSV of
``filename`` and the top-k class indices, written with ``--topk 5 --include-index --fullname``)
and ``--val-dir`` (the validation ImageFolder the file was made from), that checkpoint's top-5
becomes the predictions of ``--topk-epoch`` (default: the last epoch), so the confusion matrix
and drill-down work. Rows are matched by path relative to ``--val-dir``; a file without class
indices, or with file names that repeat (no ``--fullname``), is refused with the flags that make
it right. timm is imported only for ``--checkpoint`` (exported to ONNX for the classifier).
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
from epochscope.importers.common import add_output_options, fraction, import_into, run_name

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
        "--checkpoint", type=Path, metavar="FILE",
        help="a checkpoint of the run (e.g. model_best.pth.tar): with timm installed it is "
        "exported to ONNX as --topk-epoch's model, so the classifier page works",
    )  # fmt: skip
    p.add_argument("--model", help="timm model name of --checkpoint (default: args.yaml's)")
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


#: the inference.py flags that write a top-k file this importer can read without guessing
TOPK_FLAGS = "--topk 5 --include-index --fullname"


class TopkError(ValueError):
    """A top-k file that cannot be matched to the validation images without guessing."""


def read_topk(path: Path) -> dict[str, list[int]]:
    """file name (as inference.py wrote it) -> top-k class indices, from its CSV: the ``index``
    column (a list per row) or ``index_0``, ``index_1``, ... (``--results-separate-col``)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise TopkError(f"--topk: {path} is empty")
    header = [h.strip() for h in rows[0]]
    if "filename" not in header:
        raise TopkError(
            f"--topk: {path} has no 'filename' column (columns: {', '.join(header[:6])}): "
            f"write it with timm's inference.py {TOPK_FLAGS}"
        )
    fi = header.index("filename")
    cols = [i for i, h in enumerate(header) if h == "index" or re.fullmatch(r"index_\d+", h)]
    if not cols:
        raise TopkError(
            f"--topk: {path} holds no class indices (columns: {', '.join(header[:6])}); the "
            f"rows are there but not which classes they predict: run timm's inference.py again "
            f"with {TOPK_FLAGS}"
        )
    out: dict[str, list[int]] = {}
    twice: list[str] = []
    for n, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        try:
            indices = [int(v) for i in cols for v in re.findall(r"-?\d+", r[i])]
        except IndexError:
            raise TopkError(f"--topk: {path} line {n} has too few columns") from None
        if r[fi] in out:
            twice.append(r[fi])
        out[r[fi]] = indices
    if twice:
        raise TopkError(
            f"--topk: {path} names {len(twice)} files twice (e.g. {twice[0]!r}): it was written "
            f"without --fullname, so files of different classes share a name; run timm's "
            f"inference.py again with {TOPK_FLAGS}"
        )
    if not out:
        raise TopkError(f"--topk: {path} holds no rows")
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
    if (ns.topk or ns.checkpoint) and not ns.val_dir:
        raise ValueError(
            "--topk and --checkpoint need --val-dir (the validation images and their classes)"
        )
    if ns.val_dir:
        if not ns.val_dir.is_dir():
            raise ValueError(f"--val-dir: {ns.val_dir} is not a folder")
        classes, samples = val_samples(ns.val_dir)
    elif isinstance(num_classes, int) and num_classes > 0:
        classes = [f"class{i}" for i in range(num_classes)]
    else:
        classes = ["?"]  # curves only: the run has no predictions to name classes for
    last = max(int(r["epoch"]) + 1 for r in rows if "epoch" in r)
    topk_epoch = ns.topk_epoch or last
    # everything that can be refused is checked before anything is written
    found = match_topk(read_topk(ns.topk), samples or [], ns.val_dir) if ns.topk else None
    size = _image_size(args)
    model = _checkpoint_model(ns, args, len(classes)) if ns.checkpoint else None
    name = run_name(folder, ns.name)

    def write(runs_dir: Path) -> Path:
        run = epochscope.init(
            name, runs_dir, classes=classes, val_images=samples, image_size=size,
            mean=_triple(args.get("mean"), epochscope.records.IMAGENET_MEAN),
            std=_triple(args.get("std"), epochscope.records.IMAGENET_STD),
            hparams={"imported_from": "timm", **{k: v for k, v in args.items()
                                                  if isinstance(v, str | int | float | bool)}},
            epochs=int(args.get("epochs") or len(rows)), arch=str(args.get("model") or "timm"),
            batch_size=int(args.get("batch_size") or 0), if_exists="resume",
        )  # fmt: skip
        with run:
            for r in sorted(rows, key=lambda r: r.get("epoch", 0)):
                epoch = int(r["epoch"]) + 1  # timm counts epochs from 0
                if epoch in run.epochs_logged:
                    continue
                if found is not None and epoch == topk_epoch:
                    _log_topk(run, epoch, found, len(classes))
                if model is not None and epoch == topk_epoch:
                    run.log_model(epoch, model, check=False)
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

    return import_into(ns.runs_dir, name, ns.resume, write)


def _checkpoint_model(ns: argparse.Namespace, args: dict[str, Any], num_classes: int) -> Any:
    """The checkpoint as a timm model (timm imported only here), for the classifier page."""
    arch = ns.model or args.get("model")
    if not arch:
        raise ValueError("--checkpoint needs --model (args.yaml names none)")
    if not ns.checkpoint.is_file():
        raise ValueError(f"--checkpoint: {ns.checkpoint} is not a file")
    try:
        import timm
    except ImportError:
        raise ValueError("--checkpoint needs timm installed (pip install timm)") from None
    model = timm.create_model(str(arch), num_classes=num_classes,
                              checkpoint_path=str(ns.checkpoint))  # fmt: skip
    return model.eval()


def match_topk(
    topk: dict[str, list[int]], samples: list[tuple[str, int]], val_dir: Path
) -> np.ndarray:
    """The top-5 class indices [N, 5] (-1 past k) in validation order, matched by each image's
    path relative to ``val_dir`` (what ``--fullname`` writes) or its absolute path. Bare file
    names are used only when no two validation images share one."""
    root = val_dir.resolve()
    rel = [Path(p).resolve().relative_to(root).as_posix() for p, _ in samples]
    by_name = {Path(k).as_posix().lstrip("./"): v for k, v in topk.items()}
    bare = all("/" not in k for k in by_name)
    if bare:
        names = [r.rsplit("/", 1)[-1] for r in rel]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise TopkError(
                f"--topk names files without their folder, and {dup!r} is in several class "
                f"folders of --val-dir: run timm's inference.py again with {TOPK_FLAGS}"
            )
        keys = names
    else:
        keys = rel
    found = np.full((len(samples), 5), -1, dtype=np.int64)
    missing = []
    for row, (key, (path, _)) in enumerate(zip(keys, samples, strict=True)):
        hit = by_name.get(key)
        if hit is None:
            hit = topk.get(str(Path(path).resolve()))
        if hit is None:
            missing.append(key)
            continue
        found[row, : min(5, len(hit))] = hit[:5]
    if missing:
        raise TopkError(
            f"--topk has no row for {len(missing)} of {len(samples)} validation images (e.g. "
            f"{missing[0]!r}): make it from the same --val-dir with {TOPK_FLAGS}"
        )
    return found


def _log_topk(run: epochscope.Run, epoch: int, found: np.ndarray, n: int) -> None:
    """Top-k indices as the epoch's predictions (probabilities unknown: 1/rank, normalised)."""
    if found.max() >= n or (found[:, 0] < 0).any():
        raise ValueError(f"--topk holds class indices outside 0..{n - 1}")
    # logits that rank the k classes as listed (softmax of 5, 4, 3, ... for the five)
    logits = np.zeros((len(found), n), dtype=np.float32)
    for rank in range(5):
        cols = found[:, rank]
        ok = cols >= 0
        logits[np.flatnonzero(ok), cols[ok]] = 5.0 - rank
    run.log_predictions(epoch, logits)
