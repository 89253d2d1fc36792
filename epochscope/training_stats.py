"""Per-image training statistics, taken from the training forward pass itself (no extra pass).

For each training image seen in an epoch: ``p_label``, the softmax probability of its given
label; ``margin``, the given label's logit minus the largest other logit (AUM's margin, Pleiss
et al. 2020: negative when the model prefers another class); ``other``, that largest other class.
They are of the augmented view the step trained on, as in AUM, under the model of that step
(the epoch's statistics span the epoch's updates). The trainer, ``epochscope.init``'s
``log_train_batch`` and the callbacks all collect them with :class:`TrainStatsCollector`; the
analysis over them is :mod:`epochscope.analysis.training_dynamics`.

A torch tensor stays on its device until the epoch ends (one copy per epoch, no host sync per
step); numpy arrays work as well. torch is never imported here: a caller passing a tensor has
imported it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: the arrays of a train_stats/epoch-NNNN.npz, each [num_train] in train_index.tsv order
STATS_ARRAYS = ("p_label", "margin", "other")
#: float16's largest finite value: a margin beyond it is stored clipped
MARGIN_LIMIT = 65000.0


def batch_stats(
    logits: Any, labels: Any, *, nll: Any = None, top: Any = None
) -> tuple[Any, Any, Any]:
    """(p_label, margin, other) of one batch's logits ``[n, C]`` and given labels ``[n]``,
    as torch tensors on the logits' device for torch input, else numpy arrays.

    A training step that has them already passes (torch only) ``nll``, the per-image
    cross-entropy without label smoothing (-log p_label), and ``top``, its ``topk`` of the
    logits (values, indices; k >= 2): then no pass over the logits is made twice (the
    trainer's top-5 accuracy and loss give both; ~4% of a small CPU model's step otherwise)."""
    if hasattr(logits, "detach"):  # a torch tensor: stay on its device
        z = logits.detach().float()
        y = labels.to(z.device).long().view(-1, 1)
        given = z.gather(1, y).squeeze(1)
        if nll is not None:
            p_label = (-nll.detach().float()).exp()
        else:
            p_label = (given - z.logsumexp(dim=1)).exp()
        values, indices = top if top is not None else z.topk(min(2, z.shape[1]), dim=1)
        if values.shape[1] < 2:  # one class: no other
            return p_label, given - float("inf"), _full_like(indices[:, 0], -1)
        label_first = indices[:, 0] == y[:, 0]  # the best other is then the second
        best = values[:, 1].float().where(label_first, values[:, 0].float())
        other = indices[:, 1].where(label_first, indices[:, 0])
        return p_label, given - best, other
    z = np.asarray(logits, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"logits {list(z.shape)} and labels {list(y.shape)}: expected [n, C], [n]")
    rows = np.arange(len(y))
    given = z[rows, y]
    top = z.max(axis=1, keepdims=True)
    p_label = np.exp(given - top[:, 0]) / np.exp(z - top).sum(axis=1)
    others = z.copy()
    others[rows, y] = -np.inf
    other = others.argmax(axis=1)
    return p_label, given - others[rows, other], other


class TrainStatsCollector:
    """One epoch's statistics as batches come: ``add`` per step, ``rows`` at the epoch's end
    (this process's images; :func:`dense` spreads them over the training set)."""

    def __init__(self, num_train: int, num_classes: int) -> None:
        self.num_train, self.num_classes = int(num_train), int(num_classes)
        self._parts: list[tuple[Any, ...]] = []

    def add(
        self,
        indices: Any,
        logits: Any,
        labels: Any,
        keep: Any = None,
        *,
        nll: Any = None,
        top: Any = None,
    ) -> None:
        """A step's training indices ``[n]``, logits ``[n, C]`` and the labels it trained on;
        ``keep`` (bool ``[n]``, optional) leaves out rows that did not train (unreadable);
        ``nll`` and ``top`` as :func:`batch_stats` takes them."""
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[-1]} classes, the run {self.num_classes}")
        p_label, margin, other = batch_stats(logits, labels, nll=nll, top=top)
        self._parts.append((indices, p_label, margin, other, keep))

    def add_computed(
        self, indices: Any, p_label: Any, margin: Any, other: Any, keep: Any = None
    ) -> None:
        """A step's statistics an engine computed itself (the MXNet engine, on its devices),
        as :func:`batch_stats` defines them; arrays with ``asnumpy`` are copied at the end."""
        self._parts.append((indices, p_label, margin, other, keep))

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self._parts)

    def rows(self) -> dict[str, np.ndarray]:
        """``index`` and the :data:`STATS_ARRAYS` of every image added, as numpy, and empty
        the collector for the next epoch (one device-to-host copy per array)."""
        parts, self._parts = self._parts, []
        names = ("index", *STATS_ARRAYS, "keep")
        out = {name: _joined([p[i] for p in parts]) for i, name in enumerate(names)}
        keep = out.pop("keep")
        if keep is not None:
            out = {k: v[keep.astype(bool)] for k, v in out.items()}
        out["index"] = out["index"].astype(np.int64)
        return out


def _full_like(t: Any, value: int) -> Any:
    return sys.modules["torch"].full_like(t, value)


def _joined(pieces: list[Any]) -> np.ndarray | None:
    """The pieces as one flat numpy array: torch tensors joined on their device first, so one
    copy reaches the host; None when the pieces are None (no keep masks)."""
    if not pieces:
        return np.zeros(0)
    if any(p is None for p in pieces):
        if all(p is None for p in pieces):
            return None
        raise ValueError("keep given for some steps of an epoch and not for others")
    if hasattr(pieces[0], "asnumpy"):  # MXNet NDArrays, on the CPU already
        return np.concatenate([p.asnumpy().reshape(-1) for p in pieces])
    if hasattr(pieces[0], "detach"):
        torch = sys.modules["torch"]  # imported by whoever passed a tensor
        return torch.cat([p.detach().reshape(-1) for p in pieces]).cpu().numpy()
    return np.concatenate([np.asarray(p).reshape(-1) for p in pieces])


def dense(rows: dict[str, np.ndarray], num_train: int, num_classes: int) -> dict[str, np.ndarray]:
    """The stored form: each of :data:`STATS_ARRAYS` over the whole training set, by training
    index (``p_label``, ``margin`` float16, NaN for an image not seen this epoch; ``other``
    int16 or int32, -1 unseen). An image seen twice (a sampler's padding) keeps one view."""
    index = np.asarray(rows["index"], dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= num_train):
        raise ValueError(f"training indices outside 0..{num_train - 1}")
    p = np.full(num_train, np.nan, np.float16)
    m = np.full(num_train, np.nan, np.float16)
    o = np.full(num_train, -1, np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32)
    p[index] = np.asarray(rows["p_label"], np.float32)
    m[index] = np.clip(np.asarray(rows["margin"], np.float32), -MARGIN_LIMIT, MARGIN_LIMIT)
    o[index] = np.asarray(rows["other"])
    return {"p_label": p, "margin": m, "other": o}


def gather_rows(rows: dict[str, np.ndarray], gather: Any) -> dict[str, np.ndarray] | None:
    """Every rank's :meth:`TrainStatsCollector.rows` joined on rank 0 (``gather``: the
    engine's gather-to-rank-0 of a picklable object, None on the other ranks)."""
    parts = gather(rows)
    if parts is None:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in ("index", *STATS_ARRAYS)}
