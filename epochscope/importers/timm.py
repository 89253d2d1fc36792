"""``python -m epochscope import timm OUTPUT_DIR``: a timm train.py output folder as a run.

Reads ``summary.csv`` (epoch, train_loss, eval_loss, eval_top1, eval_top5 in percent, lr, ...;
timm's epochs count from 0) and ``args.yaml`` (model, num_classes, epochs, batch_size, ... into
run.json). The preprocessing is resolved as timm's ``resolve_data_config`` does for train.py's
validation: args.yaml's ``input_size``/``img_size``, ``crop_pct``, ``interpolation``, ``mean``,
``std``, and where those are null or empty ("the model's default") the model's pretrained config
(:mod:`epochscope.importers.timm_table`); ``resize_size`` is ``floor(img_size / crop_pct)`` as
timm's eval transform computes it. The ``--img-size``, ``--crop-pct``, ``--interpolation``,
``--mean`` and ``--std`` flags override both. With ``--topk FILE`` (timm inference.py's output:
``filename``, the top-k class indices and their probabilities, written with ``--topk 5
--include-index --fullname``) and ``--val-dir`` (the validation ImageFolder the file was made
from), that checkpoint's top-5 becomes the predictions of ``--topk-epoch`` (default: the last
epoch), with the file's probabilities when it has a ``prob`` column. Rows are matched by path
relative to ``--val-dir``; a file without class indices, or with file names that repeat (no
``--fullname``), is refused with the flags that make it right. ``--checkpoint`` (a timm
checkpoint, timm imported only then, or its ONNX export) becomes that epoch's model, checked
against the file's top-1 like any logged model (:mod:`epochscope.selfcheck`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import epochscope
from epochscope.importers import NotThatKind
from epochscope.importers.common import add_output_options, fraction, import_into, run_name
from epochscope.importers.timm_table import lookup
from epochscope.records import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS

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
        help="a checkpoint of the run (e.g. model_best.pth.tar; with timm installed it is "
        "exported to ONNX) or its ONNX export (FILE.onnx, no timm needed): --topk-epoch's "
        "model, so the classifier page works",
    )  # fmt: skip
    p.add_argument("--model", help="timm model name of --checkpoint (default: args.yaml's)")
    p.add_argument(
        "--topk-epoch", type=int, metavar="N",
        help="the epoch (1-based) whose checkpoint --topk scored (default: last)",
    )  # fmt: skip
    g = p.add_argument_group(
        "preprocessing", "what timm's validation did, when neither args.yaml nor the model's "
        "pretrained config says (or to override them): as timm's own flags of the same names",
    )  # fmt: skip
    g.add_argument("--img-size", type=int, metavar="N", help="input image size")
    g.add_argument("--crop-pct", type=float, metavar="F", help="centre crop fraction")
    g.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize interpolation")
    g.add_argument("--mean", type=float, nargs=3, metavar="M", help="normalisation mean")
    g.add_argument("--std", type=float, nargs=3, metavar="S", help="normalisation std")
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


#: timm's own fallbacks (timm.data.resolve_data_config, transforms_imagenet_eval) when a model's
#: pretrained config lacks a value
TIMM_DEFAULT_SIZE = 224
TIMM_DEFAULT_CROP_PCT = 0.875
TIMM_DEFAULT_INTERPOLATION = "bicubic"


@dataclass
class Preprocessing:
    """What timm's validation did to an image, and where each value was read."""

    image_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sources: dict[str, str] = field(default_factory=dict)  # value name -> where it came from
    notes: list[str] = field(default_factory=list)

    @property
    def resize_size(self) -> int:
        """timm's eval transform: Resize(floor(img_size / crop_pct)), then CenterCrop(img_size)."""
        return math.floor(self.image_size / self.crop_pct)


def _triple3(value: Any) -> tuple[float, float, float] | None:
    """args.yaml's mean/std: three numbers, or one for every channel (timm accepts both)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list | tuple) and len(value) in (1, 3):
        v = [float(x) for x in value] * (3 if len(value) == 1 else 1)
        return (v[0], v[1], v[2])
    return None


def _args_size(args: dict[str, Any]) -> int | None:
    v = args.get("input_size")
    if isinstance(v, list | tuple) and len(v) == 3:
        if int(v[1]) != int(v[2]):
            raise ValueError(
                f"args.yaml: input_size {list(v)} is not square; the classifier crops a square: "
                "pass --img-size N"
            )
        return int(v[2])
    v = args.get("img_size")
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, list | tuple) and v and isinstance(v[-1], int):
        return int(v[-1])
    return None


def resolve_preprocessing(
    args: dict[str, Any], ns: argparse.Namespace, strict: bool
) -> Preprocessing:
    """As timm's ``resolve_data_config(vars(args), model=model)``: each value from the flag, else
    args.yaml, else the model's pretrained config (by its name in args.yaml), else timm's own
    fallback. ``strict`` (a model will be stored, so the classifier depends on it): a value that
    args.yaml leaves to a model this importer does not know is refused, naming its flag."""
    model = str(ns.model or args.get("model") or "")
    cfg = lookup(model) if model else None
    where = cfg.source if cfg else None
    sources: dict[str, str] = {}
    missing: list[str] = []

    def pick(name: str, flag: Any, from_args: Any, from_cfg: Any, fallback: Any, opt: str) -> Any:
        if flag is not None:
            sources[name] = opt
            return flag
        if from_args is not None:
            sources[name] = "args.yaml"
            return from_args
        if cfg is not None:
            sources[name] = where if from_cfg is not None else f"timm's default ({where} has none)"
            return from_cfg if from_cfg is not None else fallback
        if strict:
            missing.append(opt)
        sources[name] = "timm's default (model unknown here)"
        return fallback

    size = pick("image_size", ns.img_size, _args_size(args),
                cfg.input_size[-1] if cfg and cfg.input_size else None, TIMM_DEFAULT_SIZE,
                "--img-size")  # fmt: skip
    crop_arg = args.get("crop_pct")
    crop = pick("crop_pct", ns.crop_pct, float(crop_arg) if crop_arg else None,
                cfg.crop_pct if cfg else None, TIMM_DEFAULT_CROP_PCT, "--crop-pct")  # fmt: skip
    interp_arg = args.get("interpolation")
    interp = pick("interpolation", ns.interpolation, str(interp_arg) if interp_arg else None,
                  cfg.interpolation if cfg else None, TIMM_DEFAULT_INTERPOLATION,
                  "--interpolation")  # fmt: skip
    mean = pick("mean", tuple(ns.mean) if ns.mean else None, _triple3(args.get("mean")),
                cfg.mean if cfg else None, IMAGENET_MEAN, "--mean")  # fmt: skip
    std = pick("std", tuple(ns.std) if ns.std else None, _triple3(args.get("std")),
               cfg.std if cfg else None, IMAGENET_STD, "--std")  # fmt: skip
    if missing:
        said = f"timm model {model!r} is" if model else "args.yaml names no model, so it is"
        raise ValueError(
            f"args.yaml leaves {', '.join(m[2:].replace('-', '_') for m in missing)} to the "
            f"model's default and {said} not in epochscope's table of timm's pretrained configs "
            f"(nor known to an installed timm): pass {' '.join(missing)} as timm's validation "
            "used them (inference.py logs its data config)"
        )
    interp = str(interp).lower()
    if interp not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation {interp!r} (from {sources['interpolation']}) is not one the "
            f"classifier has ({', '.join(INTERPOLATIONS)}): pass --interpolation"
        )
    if not 0 < float(crop) <= 1:
        raise ValueError(f"crop_pct {crop} (from {sources['crop_pct']}): pass --crop-pct in (0, 1]")
    pre = Preprocessing(int(size), float(crop), interp, mean, std, sources)
    mode = args.get("crop_mode") or (cfg.crop_mode if cfg else None)
    if mode and mode != "center":
        pre.notes.append(
            f"timm's crop_mode is {mode!r}; the classifier resizes the shorter side and crops the "
            "centre, so photos that are not square are prepared differently"
        )
    return pre


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


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Topk:
    """inference.py's rows: file name -> top-k class indices, and their probabilities when the
    file has them (``prob_column`` names the column they came from, else None)."""

    indices: dict[str, list[int]]
    probs: dict[str, list[float]] | None = None
    prob_column: str | None = None
    other_outputs: str | None = None  # a logit column: top-k logits are no probabilities


def read_topk(path: Path) -> Topk:
    """file name (as inference.py wrote it) -> top-k class indices, from its CSV: the ``index``
    column (a list per row) or ``index_0``, ``index_1``, ... (``--results-separate-col``); the
    probabilities from ``prob`` (or ``prob_0``, ...) when present."""
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
    pcols = [i for i, h in enumerate(header) if h == "prob" or re.fullmatch(r"prob_\d+", h)]
    logit = next((h for h in header if h == "logit" or re.fullmatch(r"logit_\d+", h)), None)
    out: dict[str, list[int]] = {}
    probs: dict[str, list[float]] = {}
    names: Counter[str] = Counter()
    for n, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        try:
            indices = [int(v) for i in cols for v in re.findall(r"-?\d+", r[i])]
            p = [float(v) for i in pcols for v in _NUMBER.findall(r[i])]
        except IndexError:
            raise TopkError(f"--topk: {path} line {n} has too few columns") from None
        if pcols and len(p) != len(indices):
            raise TopkError(
                f"--topk: {path} line {n} has {len(indices)} class indices but {len(p)} "
                "probabilities"
            )
        names[r[fi]] += 1
        out[r[fi]] = indices
        probs[r[fi]] = p
    repeated = {k: c for k, c in names.items() if c > 1}
    if repeated:
        first = next(iter(repeated))
        lo, hi = min(repeated.values()), max(repeated.values())
        times = f"{hi} times each" if lo == hi else f"{lo} to {hi} times"
        raise TopkError(
            f"--topk: {path} repeats {len(repeated)} file names, {times} (e.g. {first!r} on "
            f"{repeated[first]} rows): it was written without --fullname, so files of different "
            f"classes share a name; run timm's inference.py again with {TOPK_FLAGS}"
        )
    if not out:
        raise TopkError(f"--topk: {path} holds no rows")
    if not pcols:
        return Topk(out, other_outputs=logit)
    return Topk(out, probs, header[pcols[0]] if len(pcols) == 1 else "prob_0..")


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
    topk = read_topk(ns.topk) if ns.topk else None
    found = match_topk(topk, samples or [], ns.val_dir) if topk else None
    pre = resolve_preprocessing(args, ns, strict=bool(ns.checkpoint))
    model = _checkpoint_model(ns, args, len(classes)) if ns.checkpoint else None
    name = run_name(folder, ns.name)
    checks: list[dict[str, Any]] = []  # the model's self-check, with its warning if any

    def write(runs_dir: Path) -> Path:
        run = epochscope.init(
            name, runs_dir, classes=classes, val_images=samples, image_size=pre.image_size,
            resize_size=pre.resize_size, interpolation=pre.interpolation, mean=pre.mean,
            std=pre.std,
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
                    with warnings.catch_warnings(record=True) as said:
                        warnings.simplefilter("always", epochscope.api.EpochscopeWarning)
                        run.log_model(epoch, model)  # checked against the file's top-1 now
                    for c in run.self_checks:
                        checks.append({**c, "message": next((str(w.message) for w in said), "")})
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

    run_dir = import_into(ns.runs_dir, name, ns.resume, write)
    _summary(ns, rows, pre, topk, found, topk_epoch, model is not None, checks)
    return run_dir


def _summary(
    ns: argparse.Namespace, rows: list[dict[str, float]], pre: Preprocessing, topk: Topk | None,
    found: tuple[np.ndarray, np.ndarray | None] | None, topk_epoch: int, has_model: bool,
    checks: list[dict[str, Any]],
) -> None:  # fmt: skip
    """What became what, and where each value was read."""
    print(f"{len(rows)} epochs from summary.csv (timm's epochs from 0, here from 1)")
    src = pre.sources
    print(f"  image_size {pre.image_size} ({src['image_size']})")
    print(f"  crop_pct {pre.crop_pct} ({src['crop_pct']}) -> resize_size {pre.resize_size}")
    print(f"  interpolation {pre.interpolation} ({src['interpolation']})")
    print(f"  mean {list(pre.mean)} ({src['mean']}), std {list(pre.std)} ({src['std']})")
    for note in pre.notes:
        print(f"  note: {note}")
    if topk is not None and found is not None:
        what = (
            f"the file's top-{found[0].shape[1]} probabilities ({topk.prob_column} column); the "
            "other classes share the rest equally"
            if found[1] is not None
            else "rank weights (the file has no prob column"
            + (f"; its {topk.other_outputs} column holds logits of the top-k only)"
               if topk.other_outputs else ")")
        )  # fmt: skip
        print(f"  epoch {topk_epoch} predictions: {ns.topk.name}'s top-5 for "
              f"{len(found[0])} images, probabilities: {what}")  # fmt: skip
    if has_model:
        head = f"  epoch {topk_epoch} model: {ns.checkpoint.name}; self-check:"
        if checks:
            c = checks[0]
            print(f"{head} prepared as the classifier prepares a photo, its top-1 equals the "
                  f"file's on {c['agree']} of {c['checked']} validation images")  # fmt: skip
            if c["warned"]:
                print(f"  WARNING: {c['message']}")
        else:
            print(f"  epoch {topk_epoch} model: {ns.checkpoint.name}; self-check not run "
                  "(needs --topk, onnxruntime and Pillow)")  # fmt: skip


def _checkpoint_model(ns: argparse.Namespace, args: dict[str, Any], num_classes: int) -> Any:
    """The checkpoint as ONNX bytes (a ``.onnx`` file, no timm needed) or a timm model (timm
    imported only here), for the classifier page."""
    if not ns.checkpoint.is_file():
        raise ValueError(f"--checkpoint: {ns.checkpoint} is not a file")
    if ns.checkpoint.suffix.lower() == ".onnx":
        return ns.checkpoint.read_bytes()
    arch = ns.model or args.get("model")
    if not arch:
        raise ValueError("--checkpoint needs --model (args.yaml names none)")
    try:
        import timm
    except ImportError:
        raise ValueError(
            "--checkpoint needs timm installed (pip install timm), or pass the checkpoint's "
            "ONNX export (FILE.onnx)"
        ) from None
    model = timm.create_model(str(arch), num_classes=num_classes,
                              checkpoint_path=str(ns.checkpoint))  # fmt: skip
    return model.eval()


def match_topk(
    topk: Topk, samples: list[tuple[str, int]], val_dir: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """The top-5 class indices [N, 5] (-1 past k) in validation order, and their probabilities
    [N, 5] (0 past k; None when the file has none), matched by each image's path relative to
    ``val_dir`` (what ``--fullname`` writes) or its absolute path. Bare file names are used only
    when no two validation images share one."""
    root = val_dir.resolve()
    rel = [Path(p).resolve().relative_to(root).as_posix() for p, _ in samples]
    keyed = {Path(k).as_posix().lstrip("./"): k for k in topk.indices}
    by_name = {k: topk.indices[orig] for k, orig in keyed.items()}
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
    prob = np.zeros((len(samples), 5), dtype=np.float64) if topk.probs is not None else None
    missing = []
    for row, (key, (path, _)) in enumerate(zip(keys, samples, strict=True)):
        orig = keyed.get(key)
        if orig is None and str(Path(path).resolve()) in topk.indices:
            orig = str(Path(path).resolve())
        if orig is None:
            missing.append(key)
            continue
        hit = topk.indices[orig]
        found[row, : min(5, len(hit))] = hit[:5]
        if prob is not None and topk.probs is not None:
            p = topk.probs[orig]
            prob[row, : min(5, len(p))] = p[:5]
    if missing:
        raise TopkError(
            f"--topk has no row for {len(missing)} of {len(samples)} validation images (e.g. "
            f"{missing[0]!r}): make it from the same --val-dir with {TOPK_FLAGS}"
        )
    return found, prob


#: the smallest probability taken as given (a 0 in the file has no logarithm)
TINY = 1e-12
#: what each rank's logit is lowered by, so that equal probabilities keep the file's order
RAMP = 1e-6


def topk_logits(found: np.ndarray, prob: np.ndarray | None, n: int) -> np.ndarray:
    """Logits [N, n] whose softmax gives the file's top-k probabilities (to within 5 ``RAMP``)
    in the file's order, the other classes sharing the rest of the probability equally. Without
    probabilities, rank weights: the softmax of 5, 4, 3, ... for the k classes listed."""
    if found.max() >= n or (found[:, 0] < 0).any():
        raise ValueError(f"--topk holds class indices outside 0..{n - 1}")
    rows = np.arange(len(found))
    if prob is None:
        logits = np.zeros((len(found), n), dtype=np.float64)
        for rank in range(5):
            ok = found[:, rank] >= 0
            logits[rows[ok], found[ok, rank]] = 5.0 - rank
        return logits.astype(np.float32)
    if not np.isfinite(prob).all() or (prob < 0).any() or (prob > 1 + 1e-6).any():
        raise ValueError("--topk: its prob column holds values that are no probabilities")
    valid = found >= 0
    k = valid.sum(axis=1)
    rest = np.clip(1.0 - np.where(valid, prob, 0.0).sum(axis=1), 0.0, None)
    others = np.where(n > k, rest / np.maximum(n - k, 1), 0.0)
    # the classes outside the top-k are each at most the k-th: their mean cannot be more
    kth = prob[rows, np.maximum(k - 1, 0)]
    other_logit = np.log(np.maximum(np.minimum(others, kth), TINY)) - 5 * RAMP
    logits = np.repeat(other_logit[:, None], n, axis=1)
    for rank in range(5):
        ok = valid[:, rank]
        logits[rows[ok], found[ok, rank]] = np.log(np.maximum(prob[ok, rank], TINY)) - rank * RAMP
    return logits.astype(np.float32)


def _log_topk(
    run: epochscope.RunLogger, epoch: int, found: tuple[np.ndarray, np.ndarray | None], n: int
) -> None:
    """The file's top-k (with its probabilities when it has them) as the epoch's predictions."""
    run.log_predictions(epoch, topk_logits(found[0], found[1], n))
