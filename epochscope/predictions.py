"""Logits to the stored top-5, and back to accuracies: numpy only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_indices(scores: np.ndarray, k: int = 5) -> np.ndarray:
    """Column indices of the k largest per row, best first, ties to the lower index: what a
    stable argsort of ``-scores`` gives, found with k passes of argmax (which returns the first
    maximum), O(k C) per row instead of O(C log C). Rows with NaN or infinities take the sort."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[-1])
    if scores.ndim != 2 or k == 0 or len(scores) == 0 or scores.shape[1] <= 4 * k:
        return np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    z = scores.astype(np.result_type(scores.dtype, np.float32), copy=True)
    rows = np.arange(len(z))
    idx = np.empty((len(z), k), dtype=np.int64)
    for j in range(k):
        idx[:, j] = z.argmax(axis=-1)
        z[rows, idx[:, j]] = -np.inf  # taken: never the maximum again (all values finite)
    odd = ~np.isfinite(scores).all(axis=-1)
    if odd.any():
        idx[odd] = np.argsort(-scores[odd], axis=-1, kind="stable")[:, :k]
    return idx


def top_k(probs: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest per row, best first (ties: lower index first)."""
    order = top_indices(probs, k)
    return order, np.take_along_axis(probs, order, axis=-1)


def log_sum_exp(logits: np.ndarray) -> np.ndarray:
    """Row-wise log(sum(exp(logits))) in float32 (max subtracted first), shape [N, 1]."""
    z = np.asarray(logits, dtype=np.float32)
    m = z.max(axis=-1, keepdims=True)
    return m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def pad5(a: np.ndarray, fill: float) -> np.ndarray:
    """[N, k] -> [N, 5] with ``fill`` in the missing columns (fewer than five classes)."""
    if a.shape[1] >= 5:
        return a[:, :5]
    pad = np.full((a.shape[0], 5 - a.shape[1]), fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=1)


def top5_from_logits(
    logits: np.ndarray, lse: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] -> (top5 int16 [N, 5], prob float16 [N, 5]) as predictions files hold.

    Probabilities are softmax values of the five alone (exp(logit - log-sum-exp)), so no
    [N, C] softmax is made; ``lse`` is :func:`log_sum_exp` of the logits when already known."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, classes], not {list(logits.shape)}")
    idx = top_indices(logits, 5)
    lse = log_sum_exp(logits) if lse is None else lse
    prob = np.exp(np.take_along_axis(logits, idx, axis=-1).astype(np.float32) - lse)
    return pad5(idx, -1).astype(np.int16), pad5(prob, 0.0).astype(np.float16)


def accuracy(top5: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(top-1, top-5) fractions of rows whose true label is first / among the five."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0, 0.0
    top1 = float(np.mean(top5[:, 0] == labels))
    top5_hit = float(np.mean((top5 == labels[:, None]).any(axis=1)))
    return top1, top5_hit


#: per-image arrays of a predictions file computed from the full logits (docs/run-directory.md);
#: with the scalar ``temperature`` they are what label issues and calibration read
LABEL_ARRAYS = ("p_label", "margin", "entropy", "confidence", "confidence_scaled")


def label_stats(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    reduce: Callable[[list[float]], list[float]] | None = None,
) -> dict[str, np.ndarray]:
    """What a predictions file stores beside the top-5, from the full logits ``[N, C]`` and the
    given labels ``[N]``: per image ``p_label`` (softmax probability of the given label),
    ``margin`` (``p_label`` minus the largest probability of another class), ``entropy`` (of the
    softmax, nats), ``confidence`` (top-1 probability, float32 where ``prob`` is float16) and
    ``confidence_scaled`` (the same at the temperature), all float32, and ``temperature`` (0-d
    float32) minimising the validation NLL. ``reduce`` sums over the ranks of a distributed job
    for the temperature (each rank passing its own rows)."""
    from epochscope.analysis.calibration import fit_temperature

    z = np.asarray(logits)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"logits {list(z.shape)} must be [N, classes] and labels [N]")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be class indices in 0..{z.shape[1] - 1}")
    n, classes = z.shape
    out = {k: np.empty(n, dtype=np.float32) for k in LABEL_ARRAYS}

    def visit(start: int, d: np.ndarray, yy: np.ndarray) -> None:
        # d: a chunk's logits minus their row maximum, at temperature 1
        stop = start + len(d)
        rows = np.arange(len(d))
        e = np.exp(d)
        s0 = e.sum(axis=1, dtype=np.float64)
        s1 = np.einsum("ij,ij->i", e, d).astype(np.float64)  # float32: the entropy's 1e-6
        e_y = e[rows, yy].astype(np.float64)
        e[rows, yy] = -1.0  # the given label out: the best other class is the maximum left
        other = e.max(axis=1).astype(np.float64) if classes > 1 else np.zeros(len(d))
        out["p_label"][start:stop] = e_y / s0
        out["margin"][start:stop] = (e_y - np.maximum(other, 0.0)) / s0
        out["entropy"][start:stop] = np.log(s0) - s1 / s0
        out["confidence"][start:stop] = 1.0 / s0

    temperature, scaled = fit_temperature(z, y, reduce=reduce, visit=visit)
    out["confidence_scaled"][:] = scaled
    return {**out, "temperature": np.array(temperature, dtype=np.float32)}
