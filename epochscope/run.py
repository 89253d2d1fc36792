"""One run directory, read once: the read model every view and notebook goes through.

``Run(path)`` takes a snapshot of the run's files (each small file stat'ed once, read once on
first use) and keeps what every view needs as cached properties: run info, classes, labels,
validation paths, hierarchy, bands and orders, epochs and metrics. Per-epoch results
(predictions, the confusion histogram, per-class statistics, relatedness, differences, the
label arrays and what epochscope/labels.py derives from them: label issues, calibration) are
kept in a byte-bounded memo of the Run, so that :class:`RunCache` can bound a whole worker's
memory by the bytes of the Runs it holds.

A Run never re-reads a file: a caller that wants newer data asks :class:`RunCache` (or
:func:`open_run`) again, which compares the files' signatures (inode, size, mtime) and opens a
new Run when they changed. The metrics log is the exception: it is append-only and read
incrementally (``run.metrics`` reads only what was appended since the last look).

numpy and the standard library only; pandas and HoloViews are imported by the notebook adapters
(:mod:`epochscope.notebook`) when those are used.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from epochscope import maps, reader
from epochscope.analysis.bands import UNKNOWN, class_bands, class_groups
from epochscope.analysis.confusion import Confusion, Mode, Norm, cell_values, confusion
from epochscope.analysis.difference import check_same_classes, difference_cells
from epochscope.analysis.embedding_map import group_labels, silhouette
from epochscope.analysis.ordering import OrderKind, class_order, positions
from epochscope.analysis.per_class import ClassStats, band_accuracy, class_stats
from epochscope.analysis.relatedness import Relatedness, Relations, relatedness, relations
from epochscope.cache import ByteLRU
from epochscope.catalogue import Catalogue, load_catalogue
from epochscope.embeddings import EMBEDDINGS_MISSING, Embeddings, unit_rows
from epochscope.hierarchy import Taxonomy, read_hierarchy
from epochscope.layout import (
    CLASSES_TSV,
    EMBEDDING_SUFFIX,
    EMBEDDINGS,
    HIERARCHY_TSV,
    MODEL_SUFFIX,
    MODELS,
    PREDICTION_SUFFIX,
    PREDICTIONS,
    RUN_JSON,
    VAL_INDEX_TSV,
    epochs_in,
    predictions_path,
)
from epochscope.modelfile import ModelFile
from epochscope.records import RunInfo
from epochscope.storage.location import is_remote, local_folder

log = logging.getLogger(__name__)

MB = 1 << 20
#: what a Run's memo of per-epoch results may hold (EPOCHSCOPE_RUN_MEMO_MB)
RUN_MEMO_BYTES = int(os.environ.get("EPOCHSCOPE_RUN_MEMO_MB", "256")) * MB

#: the files (and folders) whose change makes a new snapshot, besides each epoch's predictions
#: file; metrics.jsonl is append-only and read incrementally instead
SNAPSHOT_FILES = (
    RUN_JSON,
    CLASSES_TSV,
    VAL_INDEX_TSV,
    HIERARCHY_TSV,
    PREDICTIONS,
    MODELS,
    EMBEDDINGS,
)

#: band silhouettes by embeddings file, shared by a worker's Runs (a float each)
_SILHOUETTES = ByteLRU(1 * MB)

FileSignature = tuple[int, int, int] | None
Signature = tuple[tuple[FileSignature, ...], tuple[tuple[int, FileSignature], ...]]


def _stat(path: str) -> FileSignature:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def signature(path: str | os.PathLike[str]) -> Signature:
    """(inode, size, mtime) of each of :data:`SNAPSHOT_FILES` and of each epoch's predictions
    file (None when missing): one stat each, what says a Run of ``path`` is out of date (an
    epoch rewritten in place included) and which epochs it has."""
    files = tuple(_stat(os.path.join(path, name)) for name in SNAPSHOT_FILES)
    epochs = epochs_in(Path(path) / PREDICTIONS, PREDICTION_SUFFIX) if files[4] else []
    return files, tuple((e, _stat(str(predictions_path(path, e)))) for e in epochs)


class Run:
    """A run directory, read through one object (see the module's docstring).

    Damage in the run's files raises LookupError (missing) or ValueError (unreadable) from the
    property that needs the file, for this run only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        snapshot: Signature | None = None,
        logs: reader.MetricsCache | None = None,
    ) -> None:
        self.path = Path(path)
        # the provider's bounded logs, shared by its snapshots of this run; else the Run's own
        self._logs = logs if logs is not None else reader.MetricsCache(1)
        self.name = self.path.name
        self.signature = signature(self.path) if snapshot is None else snapshot
        if self.signature[0][0] is None:
            raise LookupError(f"{self.path} is not a run directory (no {RUN_JSON})")
        self._memo = ByteLRU(RUN_MEMO_BYTES)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<epochscope Run {self.name!r}: {len(self.epochs)} epochs, {self.state}>"

    # --- run.json, classes, validation set ----------------------------------------------------
    @cached_property
    def _info(self) -> tuple[RunInfo | None, str | None]:
        try:
            return reader.read_run_info(self.path), None
        except (LookupError, ValueError) as e:
            return None, str(e)

    @property
    def info(self) -> RunInfo:
        """run.json; ValueError naming the problem when it cannot be read."""
        info, problem = self._info
        if info is None:
            raise ValueError(problem)
        return info

    @property
    def info_or_none(self) -> RunInfo | None:
        return self._info[0]

    @property
    def problem(self) -> str | None:
        """Why run.json cannot be read, or None."""
        return self._info[1]

    @property
    def data_root(self) -> str | None:
        info = self._info[0]
        root = info.data.root if info is not None else None
        return root if isinstance(root, str) and root else None

    @cached_property
    def _classes(self) -> list[tuple[int, str, str]]:
        return reader.read_classes(self.path)

    @cached_property
    def wnids(self) -> list[str]:
        """Class ids (classes.tsv's wnid column), index order."""
        return [w for _, w, _ in self._classes]

    @cached_property
    def names(self) -> list[str]:
        """Class names, index order."""
        return [n for _, _, n in self._classes]

    @property
    def classes(self) -> list[str]:
        """Class names, index order (as a notebook says it)."""
        return self.names

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    @cached_property
    def _val_index(self) -> tuple[np.ndarray, list[str]]:
        labels, paths = reader.read_val_index(self.path)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{self.path / VAL_INDEX_TSV}: a label is not a class index")
        return labels, paths

    @property
    def labels(self) -> np.ndarray:
        """int64 [N]: the class index of each validation image."""
        return self._val_index[0]

    @property
    def paths(self) -> list[str]:
        """Validation image paths, relative to the data root."""
        return self._val_index[1]

    # --- hierarchy, bands, orders -------------------------------------------------------------
    @cached_property
    def hierarchy(self) -> Catalogue | Taxonomy | None:
        """The run's hierarchy.tsv; else WordNet when it knows a class; else None. A malformed
        hierarchy.tsv is logged and ignored (the run still shows, without bands)."""
        try:
            own = read_hierarchy(self.path)
        except ValueError as e:
            log.warning("%s: %s", self.name, e)
            own = None
        if own is not None:
            return own
        cat = load_catalogue()
        return cat if any(w in cat for w in self.wnids) else None

    @property
    def hierarchy_source(self) -> str | None:
        """``WordNet``, ``hierarchy`` (the run's own) or None."""
        if self.hierarchy is None:
            return None
        return "hierarchy" if isinstance(self.hierarchy, Taxonomy) else "WordNet"

    @cached_property
    def bands(self) -> list[str]:
        """The band of each class ("" outside the hierarchy), index order."""
        h = self.hierarchy
        return class_bands(self.wnids, h) if h is not None else [UNKNOWN] * self.num_classes

    @cached_property
    def groups(self) -> list[str]:
        """animals, objects, other or "" (WordNet's top level) of each class."""
        return class_groups(self.wnids)

    @property
    def has_bands(self) -> bool:
        return any(b != UNKNOWN for b in self.bands)

    def order_label(self, kind: OrderKind) -> str:
        """What an order is for this run: ``WordNet order``, ``hierarchy order`` (the run's
        own), ``index order`` or ``clustered order`` (also the hierarchy order of a run
        without a hierarchy)."""
        kind = self.effective_order(kind)
        if kind == "wordnet":
            return "WordNet order" if self.hierarchy_source == "WordNet" else "hierarchy order"
        return {"index": "index order", "cluster": "clustered order"}[kind]

    def effective_order(self, kind: OrderKind) -> OrderKind:
        """``wordnet`` (the hierarchy order) is the clustered order for a run without one."""
        return "cluster" if kind == "wordnet" and self.hierarchy is None else kind

    def order(self, kind: OrderKind) -> np.ndarray:
        """The display order (slot -> class index). The clustered order comes from the latest
        epoch's top-5 confusions, so that it stays put while the epoch slider moves; before
        the first epoch it is the index order."""
        kind = self.effective_order(kind)

        def build() -> np.ndarray:
            if kind == "cluster":
                if not self.epochs:
                    return class_order("index", self.wnids)
                return class_order(kind, self.wnids, self.confusion(self.epochs[-1], "top5"))
            return class_order(kind, self.wnids, hierarchy=self.hierarchy)

        return self.memo(("order", kind), build)

    def positions(self, kind: OrderKind) -> np.ndarray:
        """The display slot of each class (the inverse of :meth:`order`)."""
        kind = self.effective_order(kind)
        return self.memo(("positions", kind), lambda: positions(self.order(kind)))

    # --- epochs and metrics -------------------------------------------------------------------
    @cached_property
    def epochs(self) -> list[int]:
        """Epochs with predictions, ascending (as the snapshot found them)."""
        return [e for e, sig in self.signature[1] if sig is not None]

    @cached_property
    def embedding_epochs(self) -> list[int]:
        """Epochs with stored validation embeddings, ascending."""
        return epochs_in(self.path / EMBEDDINGS, EMBEDDING_SUFFIX)

    @cached_property
    def model_epochs(self) -> list[int]:
        """Epochs with an ONNX model, ascending."""
        return epochs_in(self.path / MODELS, MODEL_SUFFIX)

    def epoch(self, epoch: int | None) -> int:
        """``epoch``, or the last one with predictions when None; LookupError when none."""
        if epoch is not None:
            return epoch
        if not self.epochs:
            raise LookupError(f"run {self.name!r} has no predictions yet")
        return self.epochs[-1]

    @property
    def log(self) -> reader.MetricsLog:
        """metrics.jsonl, brought up to date (only appended bytes are read)."""
        return self._logs.get(self.path)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of metrics.jsonl, in file order."""
        return self.log.events

    @property
    def epoch_events(self) -> dict[int, dict[str, Any]]:
        """The epoch event of each epoch (the last one of a redone epoch), ascending."""
        return reader.epoch_table(self.events)

    @property
    def state(self) -> str:
        return reader.run_state(self.path, self.events)

    @property
    def summary(self) -> reader.RunSummary:
        """The run picker's line, built from this Run's whole log (the picker's SummaryCache
        builds the same from a digest: both go through reader.make_summary)."""
        events = self.events
        status = reader.last_status(events)
        table = self.epoch_events
        return reader.make_summary(
            self.path,
            self._info[0],
            self._info[1],
            {e: reader.clean_number(ev.get("val_top5")) for e, ev in table.items()},
            status["state"] if status else None,
            str(status["error"])[:500] if status and status.get("error") is not None else None,
        )

    # --- per-epoch results (memoised, bounded) -------------------------------------------------
    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """A result of this Run, computed once and kept while the memo's bytes allow. Views
        keep what they derive from a Run here too, so one bound covers it all."""
        return self._memo.get(key, compute)

    def forget(self, *kinds: str) -> None:
        """Drop memoised results of the given kinds (the first item of their memo key):
        ``run.forget("points")`` makes the next frame place its cells again."""
        self._memo.discard(lambda key: not (isinstance(key, tuple) and key[0] in kinds))

    def predictions(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(top5 int64 [N, 5], prob float32 [N, 5]) of an epoch (default: the last), checked
        against the run's classes and validation set."""
        e = self.epoch(epoch)
        return self.memo(
            ("predictions", e),
            lambda: reader.load_predictions(self.path, e, len(self.labels), self.num_classes),
        )

    def embeddings(self, epoch: int | None = None) -> Embeddings:
        """An epoch's validation embeddings (default: the last epoch that has them): float16
        vectors [N, D] in val_index order and the projection that made them."""
        e = self._embedding_epoch(epoch)
        return self.memo(
            ("embeddings", e), lambda: reader.load_embeddings(self.path, e, len(self.labels))
        )

    def unit_embeddings(self, epoch: int | None = None) -> np.ndarray:
        """float32 [N, D] embeddings of unit length: what a cosine search multiplies."""
        e = self._embedding_epoch(epoch)
        return self.memo(("unit_embeddings", e), lambda: unit_rows(self.embeddings(e).vectors))

    def map_layout(self, epoch: int | None = None) -> np.ndarray:
        """float32 [N, 2] in [-1, 1]: the embedding map of an epoch (default: the last with
        embeddings), one point per validation image in val_index order. Read from the layout
        cache, else computed (a minute or more at 50,000 images) by this process, or waited
        for while another computes it (:mod:`epochscope.maps`)."""
        e = self._embedding_epoch(epoch)
        return self.memo(("map_layout", e), lambda: maps.ensure(self, e)[0])

    def cached_map_layout(self, epoch: int | None = None) -> np.ndarray | None:
        """:meth:`map_layout` when some process already computed it, else None at once."""
        e = self._embedding_epoch(epoch)

        def read() -> np.ndarray:
            coords = maps.cached(self, e)
            if coords is None:
                raise LookupError("not computed yet")  # not memoised: asked again next time
            return coords

        try:
            return self.memo(("map_layout", e), read)
        except LookupError:
            return None

    @property
    def silhouette_groups(self) -> str:
        """What :meth:`band_silhouette` separates: ``bands``, or ``classes`` without bands."""
        return "bands" if self.has_bands else "classes"

    def band_silhouette(self, epoch: int | None = None) -> float | None:
        """The silhouette of the bands (classes in a run without bands) in an epoch's
        embedding space, cosine distance, on a fixed sample of at most 5,000 images: how far
        apart the network holds the families. None with fewer than two groups."""
        e = self._embedding_epoch(epoch)

        def compute() -> float | None:
            of_class = self.bands if self.has_bands else [str(c) for c in range(self.num_classes)]
            groups, _ = group_labels(self.labels, of_class)
            return silhouette(self.embeddings(e).vectors, groups)

        # kept per worker by the embeddings file's identity: a Run is replaced on every new
        # epoch, and the series would otherwise load every epoch's embeddings again
        key = ("band_silhouette", maps.layout_key(self.path, e), self.silhouette_groups)
        return _SILHOUETTES.get(key, compute)

    def silhouette_series(self) -> tuple[list[int], list[float | None]]:
        """(epochs with embeddings, :meth:`band_silhouette` of each)."""
        epochs = list(self.embedding_epochs)
        return epochs, [self.band_silhouette(e) for e in epochs]

    def map_key(self, epoch: int) -> str | None:
        """What identifies an epoch's map layout (None without embeddings): a layout job's key."""
        return maps.layout_key(self.path, epoch)

    def model(self, epoch: int) -> ModelFile:
        """The epoch's ONNX model for a classifier; OSError when the run has none."""
        return ModelFile.of(self.path, epoch)

    def _embedding_epoch(self, epoch: int | None) -> int:
        have = self.embedding_epochs
        if not have:
            raise LookupError(f"run {self.name!r} has no embeddings: {EMBEDDINGS_MISSING}")
        if epoch is None:
            return have[-1]
        if epoch not in have:
            raise LookupError(
                f"run {self.name!r} has no embeddings for epoch {epoch} "
                f"(it has them for epochs {', '.join(map(str, have))})"
            )
        return epoch

    def confusion(self, epoch: int | None = None, mode: Mode = "top5") -> Confusion:
        """The sparse confusion histogram of an epoch: ``top5`` counts each of the five
        guesses (the dashboard's matrix), ``top1`` only the first. ``.dense()`` for [C, C]."""
        if mode not in ("top5", "top1"):
            raise ValueError(f"mode must be 'top1' or 'top5', not {mode!r}")
        e = self.epoch(epoch)
        return self.memo(
            ("confusion", e, mode),
            lambda: confusion(self.labels, self.predictions(e)[0], self.num_classes, mode),
        )

    def cells(
        self, epoch: int, mode: Mode, hide_diagonal: bool = False, norm: Norm = "count"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, values) of the drawn cells (counts or row shares, diagonal or not)."""
        return self.memo(
            ("cells", epoch, mode, hide_diagonal, norm),
            lambda: cell_values(self.confusion(epoch, mode), hide_diagonal, norm),
        )

    def class_stats(self, epoch: int | None = None) -> ClassStats:
        """Per-class top-1/top-5 accuracy and most-confused-with of an epoch."""
        e = self.epoch(epoch)
        return self.memo(
            ("class_stats", e),
            lambda: class_stats(self.labels, self.predictions(e)[0], self.num_classes),
        )

    def band_accuracy(self, epoch: int | None = None, top: int = 1) -> dict[str, float]:
        e = self.epoch(epoch)
        return self.memo(
            ("band_accuracy", e, top),
            lambda: band_accuracy(
                self.labels, self.predictions(e)[0], self.bands, self.groups, top
            ),
        )

    @property
    def relations(self) -> Relations | None:
        """Band, parent and distance relations of the classes; None without a hierarchy."""
        if self.hierarchy is None:
            return None
        return self.memo(("relations",), lambda: relations(self.wnids, self.hierarchy))

    def relatedness(self, epoch: int | None = None) -> Relatedness | None:
        """How related the epoch's wrong guesses are to the true class; None without a
        hierarchy."""
        rel = self.relations
        if rel is None:
            return None
        e = self.epoch(epoch)
        return self.memo(
            ("relatedness", e), lambda: relatedness(self.labels, self.predictions(e)[0], rel)
        )

    def relatedness_series(self) -> tuple[list[int], list[Relatedness]]:
        """(epochs, relatedness of each); empty without a hierarchy."""
        if self.relations is None:
            return [], []
        return list(self.epochs), [self.relatedness(e) for e in self.epochs]  # type: ignore[misc]

    def check_same_classes(self, other: Run) -> None:
        """ClassMismatch (a ValueError naming what differs) unless ``other`` has the same
        classes in the same order."""
        check_same_classes(self.wnids, other.wnids, self.name, other.name)

    def difference(
        self, epoch: int, other: Run, other_epoch: int, mode: Mode, hide_diagonal: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, share here - share in ``other``) of every cell that differs."""
        self.check_same_classes(other)
        return self.memo(
            ("difference", other.key, epoch, other_epoch, mode, hide_diagonal),
            lambda: difference_cells(
                self.confusion(epoch, mode), other.confusion(other_epoch, mode), hide_diagonal
            ),
        )

    # --- label issues and calibration (epochscope/labels.py) ------------------------------------
    def label_stats(self, epoch: int | None = None) -> dict[str, np.ndarray] | None:
        """The label arrays of an epoch's predictions file (``p_label``, ``margin``,
        ``entropy``, ``confidence``, ``confidence_scaled``, ``temperature``), None for a file
        written before they existed; read once (memoised)."""
        e = self.epoch(epoch)
        return self.memo(
            ("label_stats", e), lambda: reader.load_label_stats(self.path, e, len(self.labels))
        )

    @property
    def label_epochs(self) -> list[int]:
        """Epochs whose predictions file holds the label arrays, ascending (each file read
        once: the arrays stay in the memo for the views that use them)."""
        return [e for e in self.epochs if self.label_stats(e) is not None]

    def label_issues(
        self, epoch: int | None = None, limit: int | None = None, method: str = "self_confidence"
    ) -> Any:
        """Validation images most likely mislabeled first (a pandas DataFrame): ``index``,
        ``path``, ``label``, ``suggested``, ``score`` (0..1, higher: more likely wrong), then
        ``label_name``, ``suggested_name``, ``flagged`` (confident learning) and
        ``flagged_epochs``; scored over the last 3 epochs with label arrays up to ``epoch``
        (default: the last). ``method``: ``self_confidence`` or ``normalized_margin``.
        LookupError (:class:`epochscope.labels.LabelStatsMissing`) for an epoch written
        before these arrays existed."""
        from epochscope import labels

        cols = labels.issue_columns(self, epoch, limit=limit, method=method)
        return labels.issues_frame(cols)

    def training_label_issues(
        self, first: int | None = None, last: int | None = None, limit: int | None = None
    ) -> Any:
        """Training images most likely mislabeled first (a pandas DataFrame), from the
        training statistics of epochs ``first..last`` (default: all): ``index``, ``path``,
        ``label``, ``suggested`` (the class the model preferred most often), ``score`` (0..1,
        higher: more likely wrong), the names, and ``aum``, ``confidence``, ``variability``,
        ``correctness``, ``forgetting`` (epochscope.analysis.training_dynamics). LookupError
        (:class:`epochscope.train_labels.TrainStatsMissing`) for a run that recorded none."""
        from epochscope import train_labels

        cols = train_labels.issue_columns(self, first, last, limit=limit)
        return train_labels.frame(cols)

    def data_map(self, first: int | None = None, last: int | None = None) -> Any:
        """The training set's data map (a pandas DataFrame, one row per training image):
        ``index``, ``label``, ``aum``, ``confidence`` (mean probability of the given label over
        the epochs), ``variability`` (its standard deviation), ``correctness``, ``forgetting``,
        ``learned``, ``suggested``, ``epochs_seen``, ``band`` (easy, ambiguous, hard, unseen).
        LookupError as :meth:`training_label_issues`."""
        from epochscope import train_labels

        return train_labels.frame(train_labels.map_arrays(self, first, last))

    def calibration(self, epoch: int | None = None) -> dict[str, Any]:
        """One epoch's calibration: ``ece``, ``ece_scaled`` (after temperature scaling),
        ``temperature``, ``accuracy``, ``count``, and DataFrames ``bins`` / ``bins_scaled``
        (15 equal-width bins of top-1 confidence: lower, upper, accuracy, confidence, count),
        ``by_band`` and ``by_class`` (count, accuracy, confidence, ece, ece_scaled).
        LookupError as :meth:`label_issues`."""
        from epochscope import labels

        return labels.calibration_frames(labels.calibration_columns(self, epoch))

    def ece_series(self) -> dict[str, list]:
        """ECE before and after temperature scaling, and the temperature, per epoch with label
        arrays (lists: ``epoch``, ``ece``, ``ece_scaled``, ``temperature``)."""
        from epochscope import labels

        return labels.ece_series(self)

    # --- identity and size --------------------------------------------------------------------
    @property
    def key(self) -> tuple[str, Signature]:
        """What identifies this snapshot of the run (a newer snapshot has another key)."""
        return (str(self.path), self.signature)

    @property
    def nbytes(self) -> int:
        """Bytes held: the validation set, the class lists, the hierarchy and the memo."""
        total = self._memo.nbytes
        d = self.__dict__
        if "_val_index" in d:
            labels, paths = d["_val_index"]
            total += labels.nbytes + sum(len(p) + 56 for p in paths)
        if "_classes" in d:
            total += sum(len(w) + len(n) + 120 for _, w, n in d["_classes"])
        if isinstance(d.get("hierarchy"), Taxonomy):  # WordNet's catalogue is shared, not counted
            h = d["hierarchy"]
            total += int(getattr(h, "nbytes", 300 * len(h.names)))
        return total

    # --- notebook adapters (pandas / HoloViews, imported when used) ---------------------------
    @property
    def metrics(self) -> Any:
        """One row per epoch (a pandas DataFrame indexed by epoch; pandas imported here)."""
        from epochscope.notebook import metrics_frame

        return metrics_frame(self)

    @property
    def steps(self) -> Any:
        """Step events as a pandas DataFrame."""
        from epochscope.notebook import steps_frame

        return steps_frame(self)

    def confusion_view(
        self, epoch: int | None = None, mode: Mode = "top5", order: OrderKind = "wordnet"
    ) -> Any:
        """A zoomable HoloViews matrix for Jupyter (see :mod:`epochscope.notebook`)."""
        from epochscope.notebook import confusion_view

        return confusion_view(self, epoch, mode, order)

    def similar(self, image_or_index: Any, k: int = 10, epoch: int | None = None) -> Any:
        """The ``k`` validation images nearest to a validation row (an int; itself left out) or
        to a photo (a path, bytes, PIL image or uint8 array: run through the epoch's ONNX model,
        which needs onnxruntime), by the cosine of the epoch's embeddings (default: the newest
        epoch that has them, and a model for a photo). A pandas DataFrame, closest first:
        ``index``, ``path``, ``label``, ``label_name``, ``distance`` (see
        :mod:`epochscope.similar`)."""
        from epochscope.similar import similar

        return similar(self, image_or_index, k, epoch)


def open_run(path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> Run:
    """A run directory as a :class:`Run`; LookupError when it is not one. A bucket URL
    (``s3://bucket/runs/NAME``, az://, gs://) reads through a mirror (see :class:`Runs`)."""
    if is_remote(path):
        from epochscope.provider import Runs

        parent, _, name = os.fspath(path).rstrip("/").rpartition("/")
        return Runs(parent, storage_options=storage_options).run(name)
    return Run(local_folder(path))


class RunCache:
    """A worker's Runs: least recently used dropped first, bounded by the bytes they hold
    (EPOCHSCOPE_RUN_CACHE_MB), each replaced by a new snapshot when its files changed."""

    def __init__(
        self,
        max_bytes: int | None = None,
        max_runs: int = 256,
        logs: reader.MetricsCache | None = None,
    ) -> None:
        self._logs = logs if logs is not None else reader.MetricsCache()
        if max_bytes is None:
            max_bytes = int(os.environ.get("EPOCHSCOPE_RUN_CACHE_MB", "768")) * MB
        self.max_bytes = max_bytes
        self.max_runs = max_runs
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike[str]) -> Run:
        """The Run of ``path``, new when its files changed since the cached one was opened."""
        key = str(path)
        snap = signature(path)
        with self._lock:
            run = self._runs.get(key)
            if run is None or run.signature != snap:
                run = self._runs[key] = Run(path, snap, self._logs)
            self._runs.move_to_end(key)
            self._evict(keep=key)
        return run

    def _evict(self, keep: str) -> None:
        total = sum(r.nbytes for r in self._runs.values())
        for name in list(self._runs):
            if total <= self.max_bytes and len(self._runs) <= self.max_runs:
                break
            if name != keep:
                total -= self._runs.pop(name).nbytes

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
