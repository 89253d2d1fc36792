"""``python -m epochscope import tensorboard LOGDIR``: a TensorBoard log's scalars as curves.

Tags are read by name: validation accuracy (``val``/``valid``/``eval``/``test`` with ``acc``,
``top1`` or ``top5``), losses, learning rate and training accuracy. The validation tag with the
fewest points sets the epochs (its k-th point is epoch k, by step order); tags with as many
points are epoch values, tags with more are step values (loss and lr become step events, placed
on the epoch axis by their steps). Percentages become fractions. Other scalars are kept as extra
epoch keys when they have one point per epoch.
"""

from __future__ import annotations

import argparse
import bisect
import re
from collections import defaultdict
from pathlib import Path

import epochscope
from epochscope.importers import NotThatKind
from epochscope.importers.common import add_output_options, fraction, run_name
from epochscope.importers.tfevents import Scalar, event_files, scalars

VAL = re.compile(r"(^|[/_.\s-])(val|valid|validation|eval|test)([/_.\s-]|$)", re.I)
TOP5 = re.compile(r"(top|acc(uracy)?)[-_@ ]?5(?!\d)")
TOP1 = re.compile(r"top[-_@ ]?1(?!\d)")
TRAIN = re.compile(r"(^|[/_.\s-])train(ing)?([/_.\s-]|$)", re.I)


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m epochscope import tensorboard")
    p.description = (
        "Import a TensorBoard log folder's scalars (accuracy, loss, learning rate) as an "
        "Epochscope run's curves. Event files are parsed here: no TensorFlow needed."
    )
    p.add_argument("folder", type=Path, metavar="LOGDIR", help="folder with *tfevents* files")
    add_output_options(p)
    return p


def role(tag: str) -> str | None:
    """The epoch key a tag stands for, or None."""
    t = tag.lower()
    val, train = bool(VAL.search(t)), bool(TRAIN.search(t))
    if TOP5.search(t):
        return "val_top5" if val or not train else "train_top5"
    if "acc" in t or TOP1.search(t):
        return "val_top1" if val or not train else "train_top1"
    if "loss" in t:
        return "val_loss" if val else "train_loss"
    if t.endswith(("lr", "learning_rate", "learning-rate")) or "/lr" in t:
        return "lr"
    return None


def _series(folder: Path) -> dict[str, list[Scalar]]:
    files = event_files(folder)
    if not folder.is_dir() or not files:
        raise NotThatKind(f"{folder} is not a TensorBoard log folder (no *tfevents* files)")
    by_tag: dict[str, dict[int, Scalar]] = defaultdict(dict)
    for path in files:
        try:
            for s in scalars(path):
                by_tag[s.tag][s.step] = s  # a step written twice (a restart): the last wins
        except ValueError as e:
            raise NotThatKind(f"{folder}: {e}") from None
    if not by_tag:
        raise NotThatKind(f"{folder} is a TensorBoard log without scalars")
    return {tag: [pts[k] for k in sorted(pts)] for tag, pts in by_tag.items()}


def import_tensorboard(ns: argparse.Namespace) -> Path:
    series = _series(ns.folder)
    roles = {tag: role(tag) for tag in series}
    val_tags = [t for t, r in roles.items() if r in ("val_top1", "val_top5", "val_loss")]
    epoch_tag = min(val_tags, key=lambda t: len(series[t])) if val_tags else None
    if epoch_tag is None:  # no validation scalars: the tag with the fewest points
        epoch_tag = min(series, key=lambda t: len(series[t]))
    epoch_steps = [s.step for s in series[epoch_tag]]
    n_epochs = len(epoch_steps)
    epochs: dict[int, dict[str, float]] = {e: {} for e in range(1, n_epochs + 1)}
    steps: list[tuple[int, str, float]] = []
    for tag, points in series.items():
        key = roles[tag] or "tb_" + re.sub(r"\W+", "_", tag).strip("_")
        if len(points) == n_epochs:
            for e, s in enumerate(points, start=1):
                value = fraction(s.value) if "top" in key else s.value
                epochs[e].setdefault(key, value)
        elif len(points) > n_epochs and roles[tag] in ("train_loss", "lr"):
            steps += [(s.step, "loss" if roles[tag] == "train_loss" else "lr", s.value)
                      for s in points]  # fmt: skip
    name = run_name(ns.folder, ns.name)
    run = epochscope.init(
        name, ns.runs_dir, classes=["?"], epochs=n_epochs, arch="tensorboard",
        hparams={"logdir": str(ns.folder.resolve())}, resume=ns.resume,
    )  # fmt: skip
    with run:
        per_step: dict[int, dict[str, float]] = defaultdict(dict)
        for step, key, value in steps:
            per_step[step][key] = value
        for step in sorted(per_step):
            e = min(n_epochs, bisect.bisect_left(epoch_steps, step) + 1)
            if e not in run.epochs_logged and e <= n_epochs:
                run.log_step(step, epoch=e, **per_step[step])
            if step >= epoch_steps[e - 1]:
                _flush(run, epochs, e)
        for e in range(1, n_epochs + 1):
            _flush(run, epochs, e)
    return run.dir


def _flush(run: epochscope.Run, epochs: dict[int, dict[str, float]], upto: int) -> None:
    for e in range(1, upto + 1):
        if e not in run.epochs_logged:
            fields = {k: v for k, v in epochs[e].items() if v == v}  # NaN dropped
            for k in ("train_top1", "train_top5", "val_top1", "val_top5"):
                if k in fields and not 0 <= fields[k] <= 1:
                    fields.pop(k)
            run.log_epoch(e, epoch_seconds=0.0, **fields)
