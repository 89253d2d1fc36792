"""Likely mislabeled validation images, from what a predictions file stores: numpy only.

Per image a predictions file holds ``p_label`` (softmax probability of the given label),
``margin`` (``p_label`` minus the best other class's probability) and the top-5 classes and
probabilities (docs/run-directory.md). From these:

- label quality scores as cleanlab's ``get_label_quality_scores`` computes them on the full
  probabilities: ``self_confidence`` = ``p_label``; ``normalized_margin`` = (margin + 1) / 2.
  Low quality: the given label is likely wrong.
- confident learning (Northcutt et al. 2021, cleanlab's ``filter_by="confident_learning"``):
  per-class thresholds t_j = the mean ``p_label`` of the images labelled j; an image is flagged
  when some class reaches its threshold, the class guessed (the confident one, or the top-1
  when several are) is not its label, and the model does not rank its label first. A class
  outside an image's top five has a probability at most the fifth's, so the flag is exact
  wherever the fifth probability lies below every threshold; ``exact`` says where it does.
- stability over epochs: an image's score is its mean (1 - quality) over the epochs given whose
  model is about as good as the shown epoch's (top-1 at least 90% of it), so an image doubted
  epoch after epoch ranks above one doubted once, while early epochs of a model still learning
  (which doubt every label) do not count. Measured on real photos with planted errors
  (bench/planted_bench.py): averaging in such early epochs lowered precision at k from 0.44 to
  0.28, and putting confident learning's flagged images first from 0.44 to 0.42; so the order
  is by score alone and ``flagged`` is a column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("self_confidence", "normalized_margin")
#: how many epochs up to the one shown the ranking averages over by default
STABILITY_EPOCHS = 3
#: epochs whose top-1 accuracy is below this share of the shown epoch's do not count
STABLE_ACCURACY_RATIO = 0.9
#: the columns of the Python, HTTP and CSV forms, in order
COLUMNS = ("index", "path", "label", "suggested", "score")
#: cleanlab's slack when comparing a probability with a threshold or the given label's
FLOAT_SLACK = 1e-6


@dataclass(frozen=True)
class EpochScores:
    """One epoch's stored arrays that label issues need (rows in val_index order)."""

    top5: np.ndarray  # int [N, 5], -1 padded
    prob: np.ndarray  # float [N, 5]
    p_label: np.ndarray  # float [N]
    margin: np.ndarray  # float [N]


def label_quality(
    p_label: np.ndarray, margin: np.ndarray, method: str = "self_confidence"
) -> np.ndarray:
    """Per image quality in [0, 1] (cleanlab's ``get_label_quality_scores`` with
    ``adjust_pred_probs=False``): low means the given label is likely wrong."""
    if method == "self_confidence":
        return np.asarray(p_label, dtype=np.float64)
    if method == "normalized_margin":
        return (np.asarray(margin, dtype=np.float64) + 1.0) / 2.0
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def suggested_labels(top5: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The most probable class other than the given label (-1 with a single class)."""
    top5 = np.asarray(top5)
    first = top5[:, 0]
    second = top5[:, 1] if top5.shape[1] > 1 else np.full(len(top5), -1)
    return np.where(first == labels, second, first).astype(np.int64, copy=False)


def confident_thresholds(p_label: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class the mean probability of that class over the images labelled with it
    (cleanlab's ``get_confident_thresholds``); a class no image is labelled with gets +inf:
    never confidently guessed."""
    y = np.asarray(labels, dtype=np.int64)
    sums = np.bincount(y, weights=np.asarray(p_label, np.float64), minlength=num_classes)
    counts = np.bincount(y, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = sums / counts
    return np.where(counts > 0, t, np.inf)


def confident_flags(
    top5: np.ndarray,
    prob: np.ndarray,
    p_label: np.ndarray,
    margin: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, exact) per image: confident learning's off-diagonal images, from the top five.

    ``exact`` is False where a class outside the top five could still reach its threshold (the
    fifth probability is not below the smallest threshold); there the flag uses the five."""
    top5 = np.asarray(top5)
    prob = np.asarray(prob)
    y = np.asarray(labels)
    valid = top5 >= 0
    t = np.asarray(thresholds, dtype=np.float64)[np.maximum(top5, 0)]
    t[~valid] = np.inf
    # the given label's own probability is stored exactly: use it in place of the rounded one
    is_label = top5 == y[:, None]
    p = np.where(is_label, np.asarray(p_label, np.float64)[:, None], prob)
    confident = p >= t - FLOAT_SLACK
    n_conf = confident.sum(axis=1)
    first_conf = np.take_along_axis(top5, confident.argmax(axis=1)[:, None], axis=1)[:, 0]
    guess = np.where(n_conf > 1, top5[:, 0], first_conf)
    # cleanlab's _reduce_issues: not an issue when the given label is (within slack) the top-1
    flagged = (n_conf > 0) & (guess != y) & (np.asarray(margin) < -FLOAT_SLACK)
    min_t = float(np.min(thresholds)) if len(thresholds) else np.inf
    every_class = valid.sum(axis=1) >= len(thresholds)  # five classes or fewer
    exact = every_class | (prob[:, -1] < min_t - FLOAT_SLACK)
    return flagged, exact


def label_issues(
    epochs: Sequence[EpochScores],
    labels: np.ndarray,
    num_classes: int,
    *,
    method: str = "self_confidence",
    limit: int | None = None,
    min_accuracy_ratio: float = STABLE_ACCURACY_RATIO,
) -> dict[str, np.ndarray]:
    """Validation images ranked by how likely their given label is wrong, most likely first.

    ``epochs``: the stored arrays of one or more epochs, the epoch shown last (e.g. the last
    three up to it, :func:`stability_window`). Only epochs whose top-1 accuracy is at least
    ``min_accuracy_ratio`` of the last one's count (a model still far from the shown one doubts
    every label alike and would drown the signal). Returns arrays ``index`` (val_index row),
    ``label``, ``suggested`` (the best other class at the last epoch), ``score`` (the mean over
    the counted epochs of 1 - quality: 0..1, higher is more likely wrong, so an image doubted
    epoch after epoch outranks one doubted once), ``quality`` (the last epoch's), ``flagged``
    (confident learning at the last epoch), ``flagged_epochs`` (in how many counted epochs),
    ``exact`` (the flag is exact from the stored top five) and the scalar-per-row ``epochs``
    (how many epochs were counted). Order: by score, ties by index; ``limit`` keeps the first
    rows."""
    if not epochs:
        raise ValueError("label_issues needs the arrays of at least one epoch")
    y = np.asarray(labels, dtype=np.int64)
    for ep in epochs:
        if len(ep.p_label) != len(y) or len(ep.top5) != len(y):
            raise ValueError(f"{len(ep.p_label)} scores for {len(y)} labels: one per image")
    accuracy = [float(np.mean(np.asarray(ep.top5)[:, 0] == y)) if len(y) else 0.0 for ep in epochs]
    counted = [ep for ep, acc in zip(epochs, accuracy, strict=True)
               if acc >= min_accuracy_ratio * accuracy[-1]]  # fmt: skip
    if counted[-1] is not epochs[-1]:
        counted.append(epochs[-1])
    doubt = np.zeros(len(y))
    flagged_epochs = np.zeros(len(y), dtype=np.int64)
    for ep in counted:
        quality = label_quality(ep.p_label, ep.margin, method)
        doubt += 1.0 - quality
        thresholds = confident_thresholds(ep.p_label, y, num_classes)
        flagged, exact = confident_flags(ep.top5, ep.prob, ep.p_label, ep.margin, y, thresholds)
        flagged_epochs += flagged
    score = doubt / len(counted)
    order = np.argsort(-score, kind="stable")  # stable: ties keep index order
    if limit is not None:
        order = order[: max(0, int(limit))]
    last = epochs[-1]
    return {
        "index": order.astype(np.int64),
        "label": y[order],
        "suggested": suggested_labels(last.top5, y)[order],
        "score": score[order],
        "quality": quality[order],
        "flagged": flagged[order],
        "flagged_epochs": flagged_epochs[order],
        "exact": exact[order],
        "epochs": np.full(len(order), len(counted), dtype=np.int64),
    }


def stability_window(epochs: Sequence[int], epoch: int, size: int = STABILITY_EPOCHS) -> list[int]:
    """The epochs a ranking for ``epoch`` averages over: the last ``size`` of ``epochs`` (those
    whose files hold the label arrays) up to and including ``epoch``, ascending."""
    if epoch not in epochs:
        raise LookupError(f"epoch {epoch} has no label arrays")
    return [e for e in sorted(epochs) if e <= epoch][-max(1, size) :]


def issue_rows(
    issues: dict[str, np.ndarray],
    paths: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, list]:
    """:func:`label_issues`' arrays as plain columns (lists) for a DataFrame, JSON or CSV:
    :data:`COLUMNS` first (``path`` from ``paths``, val_index.tsv's, "" without), then
    ``label_name`` and ``suggested_name`` with ``class_names``, ``flagged`` and
    ``flagged_epochs``."""
    index = issues["index"].tolist()
    cols: dict[str, list] = {
        "index": index,
        "path": [paths[i] for i in index] if paths is not None else [""] * len(index),
        "label": issues["label"].tolist(),
        "suggested": issues["suggested"].tolist(),
        "score": [round(float(v), 6) for v in issues["score"]],
    }
    if class_names is not None:
        cols["label_name"] = [class_names[i] for i in cols["label"]]
        cols["suggested_name"] = [class_names[i] if i >= 0 else "" for i in cols["suggested"]]
    cols["flagged"] = issues["flagged"].tolist()
    cols["flagged_epochs"] = issues["flagged_epochs"].tolist()
    return cols


def precision_at_k(ranked: np.ndarray, truly_wrong: np.ndarray, k: int) -> float:
    """Share of the first ``k`` ranked indices that are in ``truly_wrong`` (a planted set)."""
    if k <= 0:
        return 0.0
    return float(np.isin(np.asarray(ranked)[:k], np.asarray(truly_wrong)).sum() / k)
