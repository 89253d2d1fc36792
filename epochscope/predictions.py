"""Logits to the stored top-5, and back to accuracies: numpy only."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest per row, best first (ties: lower index first)."""
    k = min(k, probs.shape[-1])
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(probs, order, axis=-1)


def pad5(a: np.ndarray, fill: float) -> np.ndarray:
    """[N, k] -> [N, 5] with ``fill`` in the missing columns (fewer than five classes)."""
    if a.shape[1] >= 5:
        return a[:, :5]
    pad = np.full((a.shape[0], 5 - a.shape[1]), fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=1)


def top5_from_logits(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] -> (top5 int16 [N, 5], prob float16 [N, 5]) as predictions files hold."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, classes], not {list(logits.shape)}")
    idx, prob = top_k(softmax(logits), 5)
    return pad5(idx, -1).astype(np.int16), pad5(prob, 0.0).astype(np.float16)


def accuracy(top5: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(top-1, top-5) fractions of rows whose true label is first / among the five."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0, 0.0
    top1 = float(np.mean(top5[:, 0] == labels))
    top5_hit = float(np.mean((top5 == labels[:, None]).any(axis=1)))
    return top1, top5_hit
