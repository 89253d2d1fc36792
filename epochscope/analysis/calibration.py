"""Calibration: reliability bins, ECE and temperature scaling, numpy only.

What a predictions file stores per validation image (docs/run-directory.md) is enough for all
of it: the top-1 class (``top5[:, 0]``), its softmax probability ``confidence``, the same at
the epoch's temperature ``confidence_scaled``, and the scalar ``temperature``. The top-1 class
does not change with a positive temperature, so whether an image is right is the same before
and after scaling.

Bins are ``n_bins`` equal widths of [0, 1]: bin i holds confidences in [i/n, (i+1)/n), the last
one also 1.0. ECE is the count-weighted mean of |accuracy - confidence| over the bins (Guo et
al. 2017; torchmetrics' ``MulticlassCalibrationError(n_bins=15, norm="l1")``).

The temperature T minimises the mean negative log-likelihood of ``softmax(logits / T)`` over the
validation images. In beta = 1/T that NLL is convex (its second derivative is the variance of
the logits under the softmax), so Newton's method on beta converges in a few steps; it runs on
a subsample first and finishes on every row, each pass in cache-sized chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

N_BINS = 15
#: temperatures outside this range are clamped (a validation set the model separates perfectly
#: has its NLL falling for ever as T -> 0)
T_MIN, T_MAX = 0.01, 100.0
#: a sum over the images of every rank: ``reduce([s0, s1, ...]) -> [S0, S1, ...]``
Reduce = Callable[[list[float]], list[float]]
_CHUNK_ELEMENTS = 1 << 18  # rows per pass chunk: about 1 MiB of float32 logits


# --- reliability bins and ECE -------------------------------------------------------------------
def bin_of(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index 0..n_bins-1 of each confidence in [0, 1] (1.0 goes to the last bin)."""
    c = np.asarray(confidence, dtype=np.float64)
    return np.clip(np.floor(c * n_bins).astype(np.int64), 0, n_bins - 1)


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS
) -> dict[str, np.ndarray]:
    """Per bin: ``lower``, ``upper`` edges, ``count``, ``accuracy`` and mean ``confidence``
    (0 for an empty bin, whose count says so)."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if c.shape != ok.shape or c.ndim != 1:
        raise ValueError(f"confidence {c.shape} and correct {ok.shape} must be the same [N]")
    b = bin_of(c, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(b, weights=ok, minlength=n_bins) / count
        conf = np.bincount(b, weights=c, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "accuracy": np.nan_to_num(acc),
        "confidence": np.nan_to_num(conf),
    }


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: sum over bins of count/N * |accuracy - confidence|."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return 0.0
    gap = np.abs(bins["accuracy"] - bins["confidence"])
    return float((bins["count"] * gap).sum() / n)


def grouped_ece(
    confidence: np.ndarray,
    correct: np.ndarray,
    groups: np.ndarray,
    num_groups: int | None = None,
    n_bins: int = N_BINS,
) -> dict[str, np.ndarray]:
    """ECE within each group (a class, a band: ``groups[i]`` in 0..num_groups-1, -1 = none).

    Returns per group ``count``, ``accuracy``, ``confidence`` (means) and ``ece`` (0 for an
    empty group), all in one pass of bincounts over (group, bin)."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    g = np.asarray(groups, dtype=np.int64)
    if not (c.shape == ok.shape == g.shape) or c.ndim != 1:
        raise ValueError("confidence, correct and groups must be the same [N]")
    if num_groups is None:
        num_groups = int(g.max()) + 1 if g.size else 0
    keep = (g >= 0) & (g < num_groups)
    c, ok, g = c[keep], ok[keep], g[keep]
    cell = g * n_bins + bin_of(c, n_bins)
    size = num_groups * n_bins
    count = np.bincount(cell, minlength=size).reshape(num_groups, n_bins)
    acc_sum = np.bincount(cell, weights=ok, minlength=size).reshape(num_groups, n_bins)
    conf_sum = np.bincount(cell, weights=c, minlength=size).reshape(num_groups, n_bins)
    n = count.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # per bin |acc_sum - conf_sum| is count * |accuracy - confidence|
        per_group = np.abs(acc_sum - conf_sum).sum(axis=1) / n
        accuracy = acc_sum.sum(axis=1) / n
        mean_conf = conf_sum.sum(axis=1) / n
    return {
        "count": n.astype(np.int64),
        "accuracy": np.nan_to_num(accuracy),
        "confidence": np.nan_to_num(mean_conf),
        "ece": np.nan_to_num(per_group),
    }


# --- temperature ----------------------------------------------------------------------------------
#: ``visit(start, d, y)``: a chunk of rows from ``start``, ``d`` = logits minus the row maximum
#: (float32), ``y`` their labels; called once per chunk on the first pass over every row
Visit = Callable[[int, np.ndarray, np.ndarray], None]


def _newton_sums(
    logits: np.ndarray,
    labels: np.ndarray,
    beta: float,
    rows: np.ndarray | None = None,
    visit: Visit | None = None,
) -> tuple[list[float], np.ndarray]:
    """[NLL sum, gradient sum, curvature sum, count] at beta = 1/T over ``rows`` (all when
    None), and the top-1 softmax probability of each of those rows at that temperature."""
    with np.errstate(invalid="ignore"):  # rows of NaN or infinite logits give NaN, left out
        return _sums(logits, labels, beta, rows, visit)


def _sums(
    logits: np.ndarray,
    labels: np.ndarray,
    beta: float,
    rows: np.ndarray | None,
    visit: Visit | None,
) -> tuple[list[float], np.ndarray]:
    z_all = logits if rows is None else logits[rows]
    y_all = labels if rows is None else labels[rows]
    n, classes = z_all.shape
    nll = grad = curv = 0.0
    count = n
    top = np.empty(n, dtype=np.float64)
    per = max(1, _CHUNK_ELEMENTS // max(classes, 1))
    b = np.float32(beta)
    for start in range(0, n, per):
        z = np.asarray(z_all[start : start + per], dtype=np.float32)
        stop = start + len(z)
        y = y_all[start:stop]
        d = z - z.max(axis=1, keepdims=True)  # <= 0, 0 at the maximum
        if visit is not None:
            visit(start, d, y)
        d_y = np.take_along_axis(d, y[:, None], axis=1)[:, 0].astype(np.float64)
        e = np.multiply(d, b)
        np.exp(e, out=e)
        s0 = e.sum(axis=1, dtype=np.float64)
        e *= d
        # float32 sums: they set the step's direction and size, not the stored figures
        s1 = e.sum(axis=1).astype(np.float64)  # sum exp(beta d) d
        s2 = np.einsum("ij,ij->i", e, d).astype(np.float64)  # sum exp(beta d) d^2
        mean = s1 / s0
        top[start:stop] = 1.0 / s0
        ok = np.isfinite(s2) & np.isfinite(d_y)  # rows with NaN or infinite logits: left out
        if not ok.all():
            s0, s2, mean, d_y = s0[ok], s2[ok], mean[ok], d_y[ok]
            count -= int((~ok).sum())
        nll += float((np.log(s0) - beta * d_y).sum())
        grad += float((mean - d_y).sum())
        curv += float((s2 / s0 - mean * mean).sum())
    return [nll, grad, curv, float(count)], top


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    reduce: Reduce | None = None,
    subsample: int = 4096,
    tolerance: float = 3e-2,
    visit: Visit | None = None,
) -> tuple[float, np.ndarray]:
    """(T, top-1 softmax probability of every row at T): T minimises the validation NLL.

    ``reduce`` sums a list of floats over the ranks of a distributed job (each rank passing its
    own rows; every rank then takes the same steps and returns the same T). Newton steps in
    beta = 1/T run on an evenly spaced subsample of ``subsample`` rows (per rank) to
    convergence, then on every row until a step changes beta by less than ``tolerance``
    (relative; the error after that step is about its square), and one last pass gives the
    probabilities at the final T. Rows with NaN or infinite logits are left out of the fit
    (their probability is NaN); T is NaN when no row is left. ``visit`` sees every chunk of the
    first full pass (so a caller computes its own per-row figures without another pass)."""
    z = np.asarray(logits)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"logits {z.shape} must be [N, classes] and labels {y.shape} [N]")
    total = reduce or (lambda values: values)

    counted = [0.0]

    def step(
        beta: float, zz: np.ndarray, yy: np.ndarray, fn: Visit | None = None
    ) -> tuple[float, float, np.ndarray]:
        sums, top = _newton_sums(zz, yy, beta, visit=fn)
        _, grad, curv, n = total(sums)
        counted[0] = n
        if n == 0 or curv <= 1e-12:  # nothing to fit, or every softmax one-hot
            return beta, 0.0, top
        new = beta - grad / curv
        # a damped step: beta stays positive and moves at most 4x per step
        new = min(max(new, beta / 4), beta * 4)
        new = min(max(new, 1 / T_MAX), 1 / T_MIN)
        return new, abs(new - beta) / beta, top

    beta = 1.0
    if len(z) > subsample or reduce is not None:
        rows = np.linspace(0, max(len(z) - 1, 0), min(subsample, len(z))).astype(np.int64)
        zs, ys = z[rows], y[rows]  # one copy for every step
        for _ in range(50):
            beta, change, _ = step(beta, zs, ys)
            if change < tolerance / 4:  # the subsample's own optimum is only near the full one
                break
    top = np.ones(len(z))
    at = beta
    for i in range(20):
        at = beta
        beta, change, top = step(at, z, y, visit if i == 0 else None)
        if change < tolerance:  # Newton's next error is about change^2: beta is the optimum
            break
    if counted[0] == 0:  # no row with finite logits (on any rank): no temperature to give
        return float("nan"), top
    if beta != at:  # the probabilities at the final beta: one exp pass, no sums
        top = _top_probability(z, beta)
    return float(1.0 / beta), top


def _top_probability(logits: np.ndarray, beta: float) -> np.ndarray:
    """Top-1 softmax probability of every row at beta = 1/T (NaN for non-finite rows)."""
    n, classes = logits.shape
    top = np.empty(n, dtype=np.float64)
    per = max(1, _CHUNK_ELEMENTS // max(classes, 1))
    with np.errstate(invalid="ignore"):
        for start in range(0, n, per):
            z = np.asarray(logits[start : start + per], dtype=np.float32)
            e = z - z.max(axis=1, keepdims=True)
            e *= np.float32(beta)
            np.exp(e, out=e)
            top[start : start + len(z)] = 1.0 / e.sum(axis=1, dtype=np.float64)
    return top


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` (a reference)."""
    sums, _ = _newton_sums(np.asarray(logits), np.asarray(labels, np.int64), 1.0 / temperature)
    return sums[0] / max(sums[3], 1.0)


# --- what the calibration view and endpoint return ------------------------------------------------
def calibration(
    top1: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    confidence_scaled: np.ndarray,
    temperature: float,
    *,
    groups: np.ndarray | None = None,
    num_groups: int | None = None,
    n_bins: int = N_BINS,
) -> dict[str, object]:
    """One epoch's calibration from a predictions file's arrays: ``ece``, ``ece_scaled``,
    ``temperature``, ``accuracy``, ``count``, ``bins`` and ``bins_scaled`` (dicts of
    :func:`reliability_bins` arrays) and, with ``groups`` (class or band per image),
    ``groups`` / ``groups_scaled`` (:func:`grouped_ece`). Images with a NaN confidence (their
    logits were not finite) are left out; ``count`` says how many were counted."""
    correct = np.asarray(top1) == np.asarray(labels)
    confidence, confidence_scaled = np.asarray(confidence), np.asarray(confidence_scaled)
    finite = np.isfinite(confidence) & np.isfinite(confidence_scaled)
    if not finite.all():  # images whose logits were not finite (a diverged model) do not count
        correct, confidence, confidence_scaled = (
            correct[finite],
            confidence[finite],
            confidence_scaled[finite],
        )
        groups = None if groups is None else np.asarray(groups)[finite]
    out: dict[str, object] = {
        "temperature": float(temperature),
        "count": int(correct.size),
        "accuracy": float(correct.mean()) if correct.size else 0.0,
        "ece": ece(confidence, correct, n_bins),
        "ece_scaled": ece(confidence_scaled, correct, n_bins),
        "bins": reliability_bins(confidence, correct, n_bins),
        "bins_scaled": reliability_bins(confidence_scaled, correct, n_bins),
    }
    if groups is not None:
        out["groups"] = grouped_ece(confidence, correct, groups, num_groups, n_bins)
        out["groups_scaled"] = grouped_ece(confidence_scaled, correct, groups, num_groups, n_bins)
    return out


def ece_over_epochs(
    epochs: Sequence[int],
    top1: Sequence[np.ndarray],
    labels: np.ndarray,
    confidence: Sequence[np.ndarray],
    confidence_scaled: Sequence[np.ndarray],
    temperature: Sequence[float],
    n_bins: int = N_BINS,
) -> dict[str, list[float] | list[int]]:
    """The training page's curve: per epoch ``ece``, ``ece_scaled`` and ``temperature``."""
    out: dict[str, list] = {"epoch": [], "ece": [], "ece_scaled": [], "temperature": []}
    rows = zip(epochs, top1, confidence, confidence_scaled, temperature, strict=True)
    for e, t1, c, cs, t in rows:
        correct = np.asarray(t1) == labels
        out["epoch"].append(int(e))
        out["ece"].append(ece(c, correct, n_bins))
        out["ece_scaled"].append(ece(cs, correct, n_bins))
        out["temperature"].append(float(t))
    return out


def jsonable(tree: object) -> object:
    """:func:`calibration`'s result (or any part of it) with arrays as lists and numpy scalars
    as Python numbers: what ``json.dumps`` and a JSON reply take."""
    if isinstance(tree, dict):
        return {k: jsonable(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        return tree.tolist()
    if isinstance(tree, np.generic):
        return tree.item()
    return tree
