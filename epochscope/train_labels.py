"""Training-set label issues and the data map of a run, as :class:`epochscope.Run` gives them.

Built from the run's train_index.tsv and train_stats/ files (docs/run-directory.md) with
:mod:`epochscope.analysis.training_dynamics`, kept in the Run's memo (so the worker's one bound
on its Runs covers it), as plain columns for JSON replies and DataFrames for notebooks.

A run without those files (trained before Epochscope recorded them, or logged by code that
never called ``log_train_batch``) raises :class:`TrainStatsMissing`, a LookupError whose
message says why and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from epochscope import reader
from epochscope.analysis.training_dynamics import (
    TrainingDynamics,
    bands,
    issue_scores,
    ranking,
    summarise,
    threshold_cut,
)
from epochscope.layout import TRAIN_STATS, TRAIN_STATS_SUFFIX, epochs_in

if TYPE_CHECKING:
    from epochscope.run import Run

#: what a view says about a run with no training statistics
TRAIN_STATS_MISSING = (
    "this run has no per-image training statistics: it was trained before Epochscope "
    "recorded them, or by code that does not call log_train_batch (docs/api.md, "
    "'Training-set label errors')"
)
#: the columns of the training ranking, in order (Python, HTTP and CSV forms)
ISSUE_COLUMNS = (
    "index",
    "path",
    "label",
    "suggested",
    "score",
    "label_name",
    "suggested_name",
    "aum",
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "flagged",
)


class TrainStatsMissing(LookupError):
    """The run recorded no training statistics (see :data:`TRAIN_STATS_MISSING`)."""


def stats_epochs(run: Run) -> list[int]:
    """Epochs with a train_stats file, ascending."""
    return epochs_in(run.path / TRAIN_STATS, TRAIN_STATS_SUFFIX)


def train_index(run: Run) -> tuple[np.ndarray, Sequence[str]]:
    """(labels trained on, paths) of the training set; :class:`TrainStatsMissing` without."""

    def read() -> tuple[np.ndarray, Sequence[str]]:
        try:
            return reader.read_train_index(run.path)
        except LookupError:
            raise TrainStatsMissing(f"run {run.name!r}: {TRAIN_STATS_MISSING}") from None

    return run.memo(("train_index",), read)


def threshold_rows(run: Run) -> np.ndarray:
    """The rows trained as AUM's threshold samples (an extra class C), ascending; empty for a
    run trained without them."""
    info = run.info_or_none
    if info is None or not info.data.threshold_samples:
        return np.zeros(0, np.int64)
    return run.memo(("threshold_rows",), lambda: reader.read_threshold_samples(run.path))


def epoch_range(run: Run, first: int | None = None, last: int | None = None) -> list[int]:
    """The epochs with statistics in ``first..last`` (both optional, inclusive)."""
    epochs = stats_epochs(run)
    if not epochs:
        raise TrainStatsMissing(f"run {run.name!r}: {TRAIN_STATS_MISSING}")
    lo = epochs[0] if first is None else int(first)
    hi = epochs[-1] if last is None else int(last)
    chosen = [e for e in epochs if lo <= e <= hi]
    if not chosen:
        raise LookupError(
            f"run {run.name!r} has training statistics for epochs {epochs[0]}..{epochs[-1]}, "
            f"none in {lo}..{hi}"
        )
    return chosen


def dynamics(run: Run, first: int | None = None, last: int | None = None) -> TrainingDynamics:
    """Every training image's dynamics over the epochs ``first..last`` (default: all), each
    epoch's file read once, one at a time."""
    epochs = tuple(epoch_range(run, first, last))
    labels, _ = train_index(run)

    def build() -> TrainingDynamics:
        # with threshold samples the step trained on one class more: 'other' may be it
        n, c = len(labels), run.num_classes + (1 if len(threshold_rows(run)) else 0)
        pairs = ((e, reader.load_train_stats(run.path, e, n, c)) for e in epochs)
        d = summarise(pairs, n)
        if c == run.num_classes:
            return d
        # the threshold samples' fake class is never a suggestion
        return replace(d, suggested=np.where(d.suggested < run.num_classes, d.suggested, -1))

    return run.memo(("train_dynamics", epochs), build)


def _mask(
    run: Run, labels: np.ndarray, suggested: np.ndarray, label: int | None, want: int | None
) -> np.ndarray:
    """The training images a ranking lists: given ``label`` and suggested ``want`` when set,
    never a threshold sample."""
    mask = np.ones(len(labels), dtype=bool)
    if label is not None:
        mask &= labels == label
    if want is not None:
        mask &= suggested == want
    mask[threshold_rows(run)] = False
    return mask


def cut(run: Run, first: int | None = None, last: int | None = None) -> float | None:
    """The AUM at or under which the ranking flags an image (:func:`threshold_cut`), for a run
    trained with threshold samples; None without."""
    rows = threshold_rows(run)
    return threshold_cut(dynamics(run, first, last), rows) if len(rows) else None


def _number(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _ranked(
    run: Run,
    first: int | None,
    last: int | None,
    label: int | None,
    suggested: int | None,
    limit: int | None = None,
) -> tuple[TrainingDynamics, np.ndarray]:
    """(the dynamics, the ranking's training indices: those of the filters, the first
    ``limit``). A limited request ranks only what it shows (a cold worker's first reply); the
    whole ranking is sorted once, for a request without a limit, and kept."""
    d = dynamics(run, first, last)
    labels, _ = train_index(run)
    fake = threshold_rows(run)  # trained with a fake label: not candidates
    filtered = label is not None or suggested is not None or len(fake) > 0
    if limit is not None:
        among = (
            np.flatnonzero(_mask(run, labels, d.suggested, label, suggested)) if filtered else None
        )
        return d, ranking(d, limit=max(0, int(limit)), among=among)
    order = run.memo(("train_ranking", d.epochs), lambda: ranking(d))
    if filtered:
        order = order[_mask(run, labels, d.suggested, label, suggested)[order]]
    return d, order


def issue_count(
    run: Run,
    first: int | None = None,
    last: int | None = None,
    *,
    label: int | None = None,
    suggested: int | None = None,
) -> int:
    """How many training images :func:`issue_columns` ranks with these filters."""
    d = dynamics(run, first, last)
    labels, _ = train_index(run)
    return int(_mask(run, labels, d.suggested, label, suggested).sum())


def issue_columns(
    run: Run,
    first: int | None = None,
    last: int | None = None,
    *,
    limit: int | None = None,
    label: int | None = None,
    suggested: int | None = None,
) -> dict[str, list]:
    """The training images most likely mislabeled first (:data:`ISSUE_COLUMNS`), optionally
    only those given class ``label`` and/or suggested ``suggested``; the first ``limit``."""
    d, order = _ranked(run, first, last, label, suggested, limit)
    return _columns(run, d, order, cut(run, first, last))


def issue_chunks(
    run: Run,
    first: int | None = None,
    last: int | None = None,
    *,
    label: int | None = None,
    suggested: int | None = None,
    size: int = 20_000,
) -> Iterator[dict[str, list]]:
    """The whole ranking of :func:`issue_columns` as consecutive chunks of ``size`` rows: a
    1.28 M-image CSV is written without its 1.28 M-row lists in memory at once."""
    d, order = _ranked(run, first, last, label, suggested)
    at = cut(run, first, last)
    for start in range(0, len(order), size):
        yield _columns(run, d, order[start : start + size], at)


def _columns(run: Run, d: TrainingDynamics, order: np.ndarray, at: float | None) -> dict[str, list]:
    labels, paths = train_index(run)
    names = run.names
    score = issue_scores(d)
    sug = d.suggested[order]
    flagged = [None] * len(order) if at is None else (d.aum[order] <= at).tolist()
    return {
        "index": order.tolist(),
        "path": [paths[i] for i in order],
        "label": labels[order].tolist(),
        "suggested": sug.tolist(),
        "score": [_number(v) for v in score[order].tolist()],
        "label_name": [names[i] for i in labels[order]],
        "suggested_name": [names[i] if i >= 0 else "" for i in sug],
        "aum": [_number(v) for v in d.aum[order].tolist()],
        "confidence": [_number(v) for v in d.confidence[order].tolist()],
        "variability": [_number(v) for v in d.variability[order].tolist()],
        "correctness": [_number(v) for v in d.correctness[order].tolist()],
        "forgetting": d.forgetting[order].tolist(),
        "flagged": flagged,
    }


def history(
    run: Run, index: int, first: int | None = None, last: int | None = None
) -> dict[str, list]:
    """One training image's statistics per epoch of ``first..last``: ``epoch``, ``p_label``
    and ``margin`` (None: not seen that epoch), ``other`` (the best other class, -1: not
    seen), ``correct`` (its margin was positive)."""
    labels, _ = train_index(run)
    rows = [
        (e, reader.train_stats_row(run.path, e, int(index), len(labels)))
        for e in epoch_range(run, first, last)
    ]
    return {
        "epoch": [e for e, _ in rows],
        "p_label": [_number(r["p_label"]) for _, r in rows],
        "margin": [_number(r["margin"]) for _, r in rows],
        "other": [int(r["other"]) for _, r in rows],
        "correct": [bool(r["margin"] > 0) for _, r in rows],
    }


def map_arrays(run: Run, first: int | None = None, last: int | None = None) -> dict[str, Any]:
    """The data map: per training image ``index``, ``label`` and the dynamics' columns
    (:data:`epochscope.analysis.training_dynamics.MAP_COLUMNS`) and ``band``, as arrays."""
    d = dynamics(run, first, last)
    labels, _ = train_index(run)
    return {"index": np.arange(len(labels)), "label": labels, **d.columns(), "band": bands(d)}


def frame(columns: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame(columns)
