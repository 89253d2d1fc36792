"""``python -m epochscope import tensorboard LOGDIR``: a TensorBoard log's scalars as curves.

Tags are read by name: validation accuracy (``val``/``valid``/``eval``/``test`` with ``acc``,
``top1`` or ``top5``), losses, learning rate and training accuracy. A subfolder that
``SummaryWriter.add_scalars("Loss", {"train": ..., "val": ...})`` wrote (``Loss_train/``, tag
``Loss``) is its own series, ``Loss/train``. The validation tag with the fewest points sets the
epochs (its k-th point is epoch k); tags with as many points are epoch values, tags with more
are step values (step events). Each tag keeps its own step axis: when the epoch tag counts
epochs (steps 0, 1, 2, ... as ``add_scalar(tag, v, epoch)`` writes) and a step tag counts
optimizer steps, the step points are placed in epochs by their wall-clock time; when both count
optimizer steps, by step. Percentages become fractions. The import prints which tag became
which field.
"""

from __future__ import annotations

import argparse
import bisect
import re
from collections import defaultdict
from pathlib import Path

import epochscope
from epochscope.importers import NotThatKind
from epochscope.importers.common import add_output_options, fraction, import_into, run_name
from epochscope.importers.tfevents import Scalar, event_files, scalars

VAL = re.compile(r"(^|[/_.\s-])(val|valid|validation|eval|test)([/_.\s-]|$)", re.I)
TOP5 = re.compile(r"(top|acc(uracy)?)[-_@ ]?5(?!\d)")
TOP1 = re.compile(r"top[-_@ ]?1(?!\d)")
TRAIN = re.compile(r"(^|[/_.\s-])train(ing)?([/_.\s-]|$)", re.I)
ACCURACIES = ("train_top1", "train_top5", "val_top1", "val_top5")


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
    if t.endswith(("lr", "learning_rate", "learning-rate")) or "/lr" in t or t.startswith("lr"):
        return "lr"
    return None


def _series_name(folder: Path, path: Path, tag: str) -> str:
    """The tag, or ``main/key`` for the subfolder ``main_key`` add_scalars writes tag ``main``
    into. ValueError for event files of another run (another subfolder with its own tags)."""
    sub = path.parent.relative_to(folder).as_posix()
    if sub == ".":
        return tag
    prefix = tag.replace("/", "_") + "_"
    if sub.count("/") == 0 and sub.startswith(prefix) and len(sub) > len(prefix):
        return f"{tag}/{sub[len(prefix) :]}"
    raise ValueError(sub)


#: a series that add_scalars wrote and that a plain tag of the same name would have merged with:
#: (the name it was given, the plain tag, the subfolder/tag it came from)
Collision = tuple[str, str, str]


def _series(folder: Path) -> tuple[dict[str, list[Scalar]], list[Collision]]:
    """Each series' points by step, and the add_scalars series renamed to keep them apart from a
    plain tag of the same name (``add_scalars("Loss", {"train": ...})`` beside
    ``add_scalar("Loss/train", ...)``): such a one is named as TensorBoard shows it, its
    subfolder (run) and tag: ``Loss_train/Loss``."""
    files = event_files(folder)
    if not folder.is_dir() or not files:
        raise NotThatKind(f"{folder} is not a TensorBoard log folder (no *tfevents* files)")
    by_source: dict[tuple[str, str], dict[int, Scalar]] = defaultdict(dict)  # (sub, tag)
    names: dict[tuple[str, str], str] = {}
    others: set[str] = set()
    for path in files:
        sub = path.parent.relative_to(folder).as_posix()
        try:
            for s in scalars(path):
                if (sub, s.tag) not in names:
                    try:
                        names[(sub, s.tag)] = _series_name(folder, path, s.tag)
                    except ValueError as other:
                        others.add(str(other))
                        continue
                by_source[(sub, s.tag)][s.step] = s  # a step written twice (a restart): last wins
        except ValueError as e:
            raise NotThatKind(f"{folder}: {e}") from None
    if others:
        subs = sorted(others)
        raise ValueError(
            f"{folder} holds logs in subfolders of their own ({', '.join(subs[:4])}), one per "
            f"run: import each run's folder on its own, e.g. {folder / subs[0]}"
        )
    if not by_source:
        raise NotThatKind(f"{folder} is a TensorBoard log without scalars")
    plain = {tag for sub, tag in by_source if sub == "."}
    collisions: list[Collision] = []
    out: dict[str, list[Scalar]] = {}
    for (sub, tag), pts in sorted(by_source.items()):
        name = names[(sub, tag)]
        if sub != "." and name in plain:
            collisions.append((f"{sub}/{tag}", name, f"{sub}/ tag {tag}"))
            name = f"{sub}/{tag}"
        out[name] = [pts[k] for k in sorted(pts)]
    return out, collisions


def _key(tag: str) -> str:
    return "tb_" + re.sub(r"\W+", "_", tag).strip("_")


def plan(series: dict[str, list[Scalar]]) -> tuple[list[Scalar], dict[str, str], dict[str, str]]:
    """(the epoch tag's points, {tag: epoch field}, {tag: step field}). Two tags for one field:
    the one named more plainly keeps it, the other is kept under its own ``tb_`` name."""
    roles = {tag: role(tag) for tag in series}
    val_tags = [t for t, r in roles.items() if r in ("val_top1", "val_top5", "val_loss")]
    pool = val_tags or list(series)
    epoch_tag = min(pool, key=lambda t: (len(series[t]), len(t)))
    n_epochs = len(series[epoch_tag])
    as_epoch: dict[str, str] = {}
    as_step: dict[str, str] = {}
    for tag in sorted(series, key=len):
        r = roles[tag]
        if tag == "epoch":  # Lightning's epoch counter, written beside each logged step
            continue
        if len(series[tag]) == n_epochs:
            key = r if r and r not in as_epoch.values() else _key(tag)
            as_epoch[tag] = key
        elif len(series[tag]) > n_epochs:
            key = {"train_loss": "loss", "lr": "lr"}.get(r or "", _key(tag))
            as_step[tag] = key if key not in as_step.values() else _key(tag)
    return series[epoch_tag], as_epoch, as_step


def _epoch_of(epoch_points: list[Scalar], steps: list[Scalar]) -> list[int]:
    """For each step point, its 1-based epoch: the first epoch point at or after it, on the step
    axis when both count optimizer steps, else by wall-clock time (the epoch tag counts epochs:
    steps 0, 1, 2, ... while the step tag's steps run past them)."""
    e_steps = [s.step for s in epoch_points]
    b = e_steps[0]
    counts_epochs = e_steps == list(range(b, b + len(e_steps))) and b in (0, 1)
    counts_epochs = counts_epochs and max(s.step for s in steps) > e_steps[-1]
    n = len(epoch_points)
    if counts_epochs:
        times = [s.wall_time for s in epoch_points]
        return [min(n, bisect.bisect_left(times, s.wall_time) + 1) for s in steps]
    return [min(n, bisect.bisect_left(e_steps, s.step) + 1) for s in steps]


def import_tensorboard(ns: argparse.Namespace) -> Path:
    series, collisions = _series(ns.folder)
    epoch_points, as_epoch, as_step = plan(series)
    n_epochs = len(epoch_points)
    epochs: dict[int, dict[str, float]] = {e: {} for e in range(1, n_epochs + 1)}
    skipped: list[str] = []
    for tag, key in as_epoch.items():
        for e, s in enumerate(series[tag], start=1):
            value = fraction(s.value) if key in ACCURACIES or "top" in key else s.value
            if value != value or (key in ACCURACIES and not 0 <= value <= 1):
                continue  # NaN, or an accuracy that is no fraction nor percentage
            epochs[e][key] = value
    per_step: dict[int, dict[str, float]] = defaultdict(dict)
    step_epoch: dict[int, int] = {}
    for tag, key in as_step.items():
        points = series[tag]
        for s, e in zip(points, _epoch_of(epoch_points, points), strict=True):
            if s.value == s.value:
                per_step[s.step][key] = s.value
                step_epoch.setdefault(s.step, e)
    for tag in series:
        if tag not in as_epoch and tag not in as_step:
            skipped.append(tag)
    # a per-epoch train loss from the step losses, when no tag gives one and every epoch has steps
    derived: str | None = None
    loss_tag = next((t for t, k in as_step.items() if k == "loss"), None)
    if loss_tag and "train_loss" not in as_epoch.values():
        sums: dict[int, list[float]] = defaultdict(list)
        for step, fields in per_step.items():
            if "loss" in fields:
                sums[step_epoch[step]].append(fields["loss"])
        if all(sums.get(e) for e in epochs):
            for e in epochs:
                epochs[e]["train_loss"] = sum(sums[e]) / len(sums[e])
            derived = loss_tag
    name = run_name(ns.folder, ns.name)
    folder = str(ns.folder.resolve())

    def write(runs_dir: Path) -> Path:
        run = epochscope.init(
            name, runs_dir, classes=["?"], epochs=n_epochs, arch="tensorboard",
            hparams={"imported_from": "tensorboard", "logdir": folder}, if_exists="resume",
        )  # fmt: skip
        with run:
            by_epoch: dict[int, list[int]] = defaultdict(list)
            for step in sorted(per_step):
                by_epoch[step_epoch[step]].append(step)
            for e in range(1, n_epochs + 1):
                if e in run.epochs_logged:
                    continue
                for k, step in enumerate(by_epoch[e], start=1):
                    run.log_step(step, epoch=e, epoch_step=k, **per_step[step])
                run.log_epoch(e, epoch_seconds=0.0, **epochs[e])
        return run.dir

    run_dir = import_into(ns.runs_dir, name, ns.resume, write)
    print(f"{n_epochs} epochs (from the {len(epoch_points)} points of the epoch tag)")
    for renamed, tag, source in collisions:
        print(f"  {source} (add_scalars) and tag {tag} (add_scalar) would be one series: kept "
              f"apart, the add_scalars one as {renamed}")  # fmt: skip
    for tag, key in as_epoch.items():
        print(f"  {tag} -> {key} (per epoch, {len(series[tag])} points)")
    for tag, key in as_step.items():
        print(f"  {tag} -> step {key} ({len(series[tag])} points)")
    if derived:
        print(f"  train_loss per epoch: the mean of {derived}'s step points in each epoch")
    for tag in skipped:
        why = "the epoch counter" if tag == "epoch" else "fewer points than the epochs"
        print(f"  {tag} -> not imported ({len(series[tag])} points: {why})")
    return run_dir
