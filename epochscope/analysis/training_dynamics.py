"""Training dynamics of every training image over a range of epochs, and the likely
mislabeled ones first: numpy only, one epoch's arrays at a time (a 1.28 M-image run's
epochs are never stacked in memory).

Per image, from each epoch's ``p_label``, ``margin`` and ``other``
(:mod:`epochscope.training_stats`), over the epochs that saw it:

- ``aum``: the mean margin (given logit minus the largest other), the area under the margin
  curve of Pleiss et al. (NeurIPS 2020). Negative: the model kept preferring another class.
- ``confidence``, ``variability``: the mean and standard deviation of ``p_label``, the data
  map's axes (Swayamdipta et al. 2020: "hard to learn" = low confidence, low variability, mostly
  label errors); ``correctness``: the share of epochs whose top-1 was the given label.
- ``forgetting``: forgetting events (Toneva et al. 2019), epochs where an image the model had
  right becomes wrong; ``learned``: whether it was ever right.
- ``suggested``: the class the model preferred over the given label most often (a majority
  vote over the epochs, Boyer-Moore: exact whenever one class wins more than half of them).

The ranking is by confidence, lowest first (ties: lower AUM first). A run trained with AUM's
threshold samples (a share of the images given an extra, fake class) also flags the images
whose AUM is at most the threshold samples' 99th percentile (:func:`threshold_cut`).

Measured on real photos with 10% of the training labels moved (bench/train_errors_bench.py, 6
epochs), precision at k was 0.538 by confidence, 0.516 by AUM, 0.214 by correctness, and 0.518
for cleanlab on 5-fold cross-validated probabilities; the mean margin of probabilities did
worse than AUM (0.44).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: the per-image columns of a data map, in order
MAP_COLUMNS = (
    "aum",
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "learned",
    "suggested",
    "epochs_seen",
)


@dataclass(frozen=True)
class TrainingDynamics:
    """Per training image, the statistics of the module docstring (arrays [N])."""

    aum: np.ndarray  # float32, NaN for an image never seen
    confidence: np.ndarray  # float32
    variability: np.ndarray  # float32
    correctness: np.ndarray  # float32
    forgetting: np.ndarray  # int32
    learned: np.ndarray  # bool
    suggested: np.ndarray  # int64, -1 never seen
    epochs_seen: np.ndarray  # int32
    epochs: tuple[int, ...]  # the epochs summarised

    def __len__(self) -> int:
        return len(self.aum)

    def columns(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in MAP_COLUMNS}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns().values())


def summarise(
    stats: Iterable[tuple[int, dict[str, np.ndarray]]], num_train: int
) -> TrainingDynamics:
    """:class:`TrainingDynamics` of ``(epoch, arrays)`` pairs in epoch order, where arrays are
    an epoch's ``p_label``, ``margin`` (float, NaN unseen) and ``other`` (int, -1 unseen)."""
    n = int(num_train)
    sum_p = np.zeros(n, np.float32)  # float32: 90 epochs of values in 0..1 lose nothing visible
    sum_p2 = np.zeros(n, np.float32)
    sum_m = np.zeros(n, np.float32)
    seen = np.zeros(n, np.int32)
    right = np.zeros(n, np.int32)
    forgetting = np.zeros(n, np.int32)
    was_right = np.zeros(n, bool)  # right at the last epoch that saw the image
    candidate = np.full(n, -1, np.int64)  # Boyer-Moore majority vote of ``other``
    votes = np.zeros(n, np.int32)
    epochs = []
    for epoch, arrays in stats:
        epochs.append(int(epoch))
        p = np.asarray(arrays["p_label"], np.float32)
        m = np.asarray(arrays["margin"], np.float32)
        other = np.asarray(arrays["other"], np.int64)
        if not p.shape == m.shape == other.shape == (n,):
            raise ValueError(f"epoch {epoch}: statistics of {len(p)} images, expected {n}")
        now = ~np.isnan(p) & ~np.isnan(m) & (other >= 0)
        correct = m > 0
        sum_p[now] += p[now]
        sum_p2[now] += p[now] ** 2
        sum_m[now] += m[now]
        seen += now
        right += now & correct
        forgetting += now & was_right & ~correct
        was_right = np.where(now, correct, was_right)
        empty = now & (votes == 0)
        candidate[empty] = other[empty]
        same = now & (candidate == other)
        votes += np.where(empty | same, 1, np.where(now, -1, 0)).astype(np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = np.where(seen > 0, seen, np.nan)
        mean_p = sum_p / count
        var = np.maximum(sum_p2 / count - mean_p**2, 0.0)
        return TrainingDynamics(
            aum=(sum_m / count).astype(np.float32),
            confidence=mean_p.astype(np.float32),
            variability=np.sqrt(var).astype(np.float32),
            correctness=(right / count).astype(np.float32),
            forgetting=forgetting,
            learned=right > 0,
            suggested=np.where(seen > 0, candidate, -1),
            epochs_seen=seen,
            epochs=tuple(epochs),
        )


def ranking(
    dynamics: TrainingDynamics, limit: int | None = None, among: np.ndarray | None = None
) -> np.ndarray:
    """Training indices, most likely mislabeled first: lowest confidence first (ties by lower
    AUM, then lower index), images never seen last; only those ``among`` (ascending indices)
    and the first ``limit`` when given: then found by a partition, not a sort of every image
    (1.28 M images: ~20 ms instead of ~0.3 s), in the same order as the whole ranking's."""
    aum = np.where(np.isnan(dynamics.aum), np.inf, dynamics.aum)
    confidence = np.where(np.isnan(dynamics.confidence), np.inf, dynamics.confidence)
    if among is None and limit is None:
        return np.lexsort((aum, confidence))
    rows = np.arange(len(confidence)) if among is None else np.asarray(among, np.int64)
    if limit is not None and 0 < limit < len(rows):
        c = confidence[rows]
        kth = np.partition(c, limit - 1)[limit - 1]
        rows = rows[c <= kth]  # every image tied at the cut stays: the tie-breaks decide
    order = rows[np.lexsort((aum[rows], confidence[rows]))]
    return order if limit is None else order[: max(0, limit)]


def issue_scores(dynamics: TrainingDynamics) -> np.ndarray:
    """A 0..1 score per image, higher: more likely mislabeled, ordered as :func:`ranking`:
    1 - confidence (the given label's mean probability over the epochs)."""
    return (1.0 - dynamics.confidence.astype(np.float64)).astype(np.float32)


#: AUM's cut-off: the threshold samples' AUM percentile an image must not exceed to be flagged
THRESHOLD_PERCENTILE = 99.0


def threshold_cut(dynamics: TrainingDynamics, rows: np.ndarray) -> float | None:
    """The AUM under which an image is as badly learned as a deliberately wrong label: the
    99th percentile of the threshold samples' AUM (Pleiss et al. 2020, section 3); None when
    no threshold sample was seen."""
    aum = dynamics.aum[np.asarray(rows, np.int64)]
    aum = aum[~np.isnan(aum)]
    return float(np.percentile(aum, THRESHOLD_PERCENTILE)) if len(aum) else None


#: the data map's regions, by their code in :func:`band_codes`
BAND_NAMES = ("easy", "ambiguous", "hard", "unseen")
#: the regions' cut-offs (Swayamdipta et al. 2020): easy at or above, hard below both
EASY_CONFIDENCE, HARD_CONFIDENCE, HARD_VARIABILITY = 0.75, 0.25, 0.2


def band_codes(dynamics: TrainingDynamics) -> np.ndarray:
    """int8 [N]: each image's region of the data map (Swayamdipta et al.), an index into
    :data:`BAND_NAMES`: ``easy`` (confidence >= 0.75), ``hard`` (confidence < 0.25 and
    variability < 0.2: the region of label errors), ``ambiguous`` (the rest); ``unseen`` for an
    image no epoch saw."""
    c, v = dynamics.confidence, dynamics.variability
    out = np.full(len(c), BAND_NAMES.index("ambiguous"), dtype=np.int8)
    out[c >= EASY_CONFIDENCE] = BAND_NAMES.index("easy")
    out[(c < HARD_CONFIDENCE) & (v < HARD_VARIABILITY)] = BAND_NAMES.index("hard")
    out[np.isnan(c)] = BAND_NAMES.index("unseen")
    return out


def bands(dynamics: TrainingDynamics) -> np.ndarray:
    """Each image's region of the data map by name (:func:`band_codes`)."""
    return np.array(BAND_NAMES, dtype=object)[band_codes(dynamics)]
