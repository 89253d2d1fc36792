"""A run's confusion data, read through epochscope.reader and cached per worker process.

Keys carry the files' modification times, so a redone epoch (a resumed run) or a rewritten
classes.tsv is read again instead of served stale. Memory is bounded by byte-sized LRUs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assets.catalogue import Catalogue, load_catalogue
from epochscope.hierarchy import Taxonomy, read_hierarchy
from epochscope.layout import (
    CLASSES_TSV,
    HIERARCHY_TSV,
    RUN_JSON,
    VAL_INDEX_TSV,
    predictions_path,
)
from epochscope.reader import (
    load_predictions,
    prediction_epochs,
    read_classes,
    read_run_info,
    read_val_index,
)

from .bands import UNKNOWN, class_bands, class_groups
from .cache import ByteLRU
from .cells import Norm, cell_values
from .difference import check_same_classes, difference_cells
from .histogram import Confusion, Mode, confusion
from .ordering import OrderKind, class_order, positions
from .per_class import ClassStats, band_accuracy, class_stats
from .relatedness import Relatedness, Relations, relatedness, relations
from .render import Points, place, place_cells

log = logging.getLogger(__name__)

MB = 1 << 20
# ImageNet-1k top-5: a histogram ~3 MB, points ~3 MB, predictions ~2.5 MB (int64 + float32)
HISTOGRAMS = ByteLRU(256 * MB)
POINTS = ByteLRU(256 * MB)
PREDICTIONS = ByteLRU(128 * MB)
RUNS = ByteLRU(256 * MB)
MISC = ByteLRU(64 * MB)


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


@dataclass(frozen=True, eq=False)
class RunMeta:
    """What does not change between epochs: classes, labels, image paths, data root."""

    run_dir: Path
    wnids: list[str]
    names: list[str]
    bands: list[str]  # band name per class ("" when WordNet does not know the class)
    groups: list[str]  # "animals", "objects", "other" or "" (unknown to WordNet)
    labels: np.ndarray  # int64 [N]
    paths: list[str]  # relative to data_root
    data_root: str | None
    # the run's hierarchy.tsv, else WordNet when it knows a class, else None (no bands)
    hierarchy: Catalogue | Taxonomy | None = None

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    @property
    def has_bands(self) -> bool:
        return any(b != UNKNOWN for b in self.bands)

    @property
    def nbytes(self) -> int:
        return self.labels.nbytes + 64 * (len(self.paths) + 3 * len(self.wnids))


def run_meta(run_dir: Path) -> RunMeta:
    run_dir = Path(run_dir)
    key = (
        str(run_dir),
        _mtime(run_dir / CLASSES_TSV),
        _mtime(run_dir / VAL_INDEX_TSV),
        _mtime(run_dir / RUN_JSON),
        _mtime(run_dir / HIERARCHY_TSV),
    )

    def load() -> RunMeta:
        classes = read_classes(run_dir)
        labels, paths = read_val_index(run_dir)
        try:
            root = read_run_info(run_dir).data.root
        except (LookupError, ValueError):
            root = None
        wnids = [w for _, w, _ in classes]
        hierarchy = run_hierarchy(run_dir, wnids)
        return RunMeta(
            run_dir=run_dir,
            wnids=wnids,
            names=[n for _, _, n in classes],
            bands=class_bands(wnids, hierarchy) if hierarchy else [UNKNOWN] * len(wnids),
            groups=class_groups(wnids),
            labels=labels,
            paths=paths,
            data_root=root if isinstance(root, str) and root else None,
            hierarchy=hierarchy,
        )

    return RUNS.get(key, load)


def run_hierarchy(run_dir: Path, wnids: list[str]) -> Catalogue | Taxonomy | None:
    """The run's own hierarchy.tsv; else the ImageNet catalogue when it knows a class; else None.
    A malformed hierarchy.tsv is logged and ignored (the run still shows, without bands)."""
    try:
        own = read_hierarchy(run_dir)
    except ValueError as e:
        log.warning("%s: %s", run_dir.name, e)
        own = None
    if own is not None:
        return own
    cat = load_catalogue()
    return cat if any(w in cat for w in wnids) else None


def epochs(run_dir: Path) -> list[int]:
    return prediction_epochs(run_dir)


def _npz(run_dir: Path, epoch: int) -> Path:
    return predictions_path(run_dir, epoch)


def predictions(run_dir: Path, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(top5 int64 [N, 5], prob float32 [N, 5]) of an epoch, checked against the run."""
    meta = run_meta(run_dir)
    key = (str(run_dir), epoch, _mtime(_npz(run_dir, epoch)))
    return PREDICTIONS.get(
        key, lambda: load_predictions(run_dir, epoch, len(meta.labels), meta.num_classes)
    )


def epoch_confusion(run_dir: Path, epoch: int, mode: Mode) -> Confusion:
    key = (str(run_dir), epoch, mode, _mtime(_npz(run_dir, epoch)))

    def build() -> Confusion:
        meta = run_meta(run_dir)
        top5, _ = predictions(run_dir, epoch)
        return confusion(meta.labels, top5, meta.num_classes, mode)

    return HISTOGRAMS.get(key, build)


def effective_order(run_dir: Path, kind: OrderKind) -> OrderKind:
    """``wordnet`` (the hierarchy order) is the clustered order for a run without a hierarchy."""
    if kind == "wordnet" and run_meta(run_dir).hierarchy is None:
        return "cluster"
    return kind


def _order_key(run_dir: Path, kind: OrderKind) -> tuple:
    """What an order depends on: the classes (and hierarchy), and for ``cluster`` the latest
    epoch's file."""
    kind = effective_order(run_dir, kind)
    classes = (_mtime(Path(run_dir) / CLASSES_TSV), _mtime(Path(run_dir) / HIERARCHY_TSV))
    if kind != "cluster":
        return (str(run_dir), kind, classes)
    latest = (epochs(run_dir) or [0])[-1]
    return (str(run_dir), kind, classes, latest, _mtime(_npz(run_dir, latest)) if latest else 0)


def order(run_dir: Path, kind: OrderKind) -> np.ndarray:
    """The display order (slot -> class index).

    The clustered order comes from the latest epoch's top-5 confusions, so that it stays put
    while the epoch slider moves; before the first epoch it is the index order.
    """
    key = _order_key(run_dir, kind)
    kind = effective_order(run_dir, kind)

    def build() -> np.ndarray:
        meta = run_meta(run_dir)
        if kind == "cluster":
            latest = key[3]
            if not latest:
                return class_order("index", meta.wnids)
            return class_order(kind, meta.wnids, epoch_confusion(run_dir, latest, "top5"))
        return class_order(kind, meta.wnids, hierarchy=meta.hierarchy)

    return MISC.get(("order", *key), build)


def slot_positions(run_dir: Path, kind: OrderKind) -> np.ndarray:
    key = _order_key(run_dir, kind)
    return MISC.get(("positions", *key), lambda: positions(order(run_dir, kind)))


def points(
    run_dir: Path,
    epoch: int,
    mode: Mode,
    kind: OrderKind,
    hide_diagonal: bool = False,
    norm: Norm = "count",
) -> Points:
    key = (
        epoch, mode, hide_diagonal, norm, _mtime(_npz(run_dir, epoch)), *_order_key(run_dir, kind)
    )  # fmt: skip

    def build() -> Points:
        conf = epoch_confusion(run_dir, epoch, mode)
        pos = slot_positions(run_dir, kind)
        if not hide_diagonal and norm == "count":
            return place(conf, pos)
        return place_cells(*cell_values(conf, hide_diagonal, norm), pos, conf.num_classes)

    return POINTS.get(key, build)


def same_classes(run_a: Path, run_b: Path) -> None:
    """Raise difference.ClassMismatch (a ValueError naming what differs) unless the two runs
    have the same classes in the same order."""
    a, b = run_meta(run_a), run_meta(run_b)
    check_same_classes(a.wnids, b.wnids, Path(run_a).name, Path(run_b).name)


def difference_points(
    run_a: Path,
    epoch_a: int,
    run_b: Path,
    epoch_b: int,
    mode: Mode,
    kind: OrderKind,
    hide_diagonal: bool = False,
) -> Points:
    """Share A - share B per cell at run A's display slots (the order of run A)."""
    same_classes(run_a, run_b)
    key = (
        "difference", str(run_b), epoch_a, epoch_b, mode, hide_diagonal,
        _mtime(_npz(run_a, epoch_a)), _mtime(_npz(run_b, epoch_b)), *_order_key(run_a, kind),
    )  # fmt: skip

    def build() -> Points:
        a = epoch_confusion(run_a, epoch_a, mode)
        b = epoch_confusion(run_b, epoch_b, mode)
        cells = difference_cells(a, b, hide_diagonal)
        return place_cells(*cells, slot_positions(run_a, kind), a.num_classes)

    return POINTS.get(key, build)


def epoch_class_stats(run_dir: Path, epoch: int) -> ClassStats:
    key = ("class_stats", str(run_dir), epoch, _mtime(_npz(run_dir, epoch)))

    def build() -> ClassStats:
        meta = run_meta(run_dir)
        top5, _ = predictions(run_dir, epoch)
        return class_stats(meta.labels, top5, meta.num_classes)

    return MISC.get(key, build)


def epoch_band_accuracy(run_dir: Path, epoch: int, top: int = 1) -> dict[str, float]:
    key = ("band_accuracy", str(run_dir), epoch, top, _mtime(_npz(run_dir, epoch)))

    def build() -> dict[str, float]:
        meta = run_meta(run_dir)
        top5, _ = predictions(run_dir, epoch)
        return band_accuracy(meta.labels, top5, meta.bands, meta.groups, top)

    return MISC.get(key, build)


def run_relations(run_dir: Path) -> Relations:
    meta = run_meta(run_dir)
    key = ("relations", str(run_dir), tuple(meta.wnids), _mtime(Path(run_dir) / HIERARCHY_TSV))
    return MISC.get(key, lambda: relations(meta.wnids, meta.hierarchy or load_catalogue()))


def epoch_relatedness(run_dir: Path, epoch: int) -> Relatedness:
    key = ("relatedness", str(run_dir), epoch, _mtime(_npz(run_dir, epoch)))

    def build() -> Relatedness:
        meta = run_meta(run_dir)
        top5, _ = predictions(run_dir, epoch)
        return relatedness(meta.labels, top5, run_relations(run_dir))

    return MISC.get(key, build)


def relatedness_series(run_dir: Path) -> tuple[list[int], list[Relatedness]]:
    es = epochs(run_dir)
    return es, [epoch_relatedness(run_dir, e) for e in es]


def clear() -> None:
    for c in (HISTOGRAMS, POINTS, PREDICTIONS, RUNS, MISC):
        c.clear()
