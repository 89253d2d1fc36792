"""The embedding map's numbers: a 2-D layout of an epoch's embeddings and the band silhouette.

``layout`` places the validation images so that images the network sees as alike lie close:
UMAP (umap-learn, imported on use) over cosine distance, with a fixed ``random_state`` so the
same embeddings always give the same map. Its start is the embeddings' own first two principal
components (the stored vectors are PCA coordinates with a fixed sign, docs/run-directory.md),
and the result is turned and mirrored onto them (orthogonal Procrustes): each epoch's map is
laid out on its own, yet consecutive epochs face the same way, so the epoch slider shows the
clusters form instead of the picture spinning.

``silhouette`` is the seed's "animals separate from objects", measured: the mean silhouette of
the groups (bands, or classes) under cosine distance on a fixed-seed sample of at most
:data:`SILHOUETTE_SAMPLE` images. numpy only.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from types import ModuleType

import numpy as np

from epochscope.embeddings import unit_rows

#: what changes the layout of the same embeddings: part of every cached layout's name
LAYOUT_VERSION = "umap-0.5-cos-n15-d0.1-pca-procrustes-1"
NEIGHBOURS = 15
MIN_DIST = 0.1
#: images the silhouette is measured on at most (its cost grows with the square)
SILHOUETTE_SAMPLE = 5000
_BLOCK = 1024


def _pca_start(vectors: np.ndarray) -> np.ndarray:
    """float32 [N, 2]: the first two principal coordinates (the stored vectors' first two
    columns), scaled to a spread UMAP starts from well; a jitter breaks exact ties."""
    start = np.asarray(vectors[:, :2], dtype=np.float64)
    if start.shape[1] < 2:
        start = np.hstack([start, np.zeros((len(start), 2 - start.shape[1]))])
    start = start - start.mean(axis=0)
    scale = np.abs(start).max() or 1.0
    jitter = np.random.default_rng(0).normal(scale=1e-4, size=start.shape)
    return (10.0 * start / scale + jitter).astype(np.float32)


def orient(coords: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``coords`` [N, 2] centred, turned and mirrored (no stretch) to best match
    ``reference`` [N, 2], then scaled so the larger half-extent is 1."""
    a = np.asarray(coords, dtype=np.float64)
    a = a - a.mean(axis=0)
    b = np.asarray(reference, dtype=np.float64)
    b = b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    out = a @ (u @ vt)
    scale = np.abs(out).max() or 1.0
    return (out / scale).astype(np.float32)


@functools.cache
def umap_with_cached_kernels() -> ModuleType:
    """umap-learn, with numba's on-disk cache turned on for all its (and pynndescent's) kernels.

    umap-learn asks numba to cache few of its ~100 kernels, so every new process (each
    dashboard worker, each layout process) compiled them again: ~20 s on this 2-core box
    before its first map. With numba's own cache (``__pycache__`` beside umap-learn, or numba's
    per-user folder when that is read-only; invalidated when umap-learn's files change) a
    process after the first loads them in under a second. Same kernels, same layouts.
    """
    import umap  # imported on use: the library's other readers never pay for it
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if name.startswith(("umap.", "pynndescent.")) and module is not None:
            for kernel in list(vars(module).values()):
                if isinstance(kernel, Dispatcher):
                    # nowhere to cache (no writable folder): it compiles, as before
                    with contextlib.suppress(RuntimeError):
                        kernel.enable_caching()
    return umap


def layout(vectors: np.ndarray, seed: int = 0, n_epochs: int | None = None) -> np.ndarray:
    """float32 [N, 2] in [-1, 1]: the UMAP layout of ``vectors`` [N, D] (see the module's doc).

    Deterministic for the same vectors and seed. Fewer than 4 images cannot be laid out by
    UMAP: they keep their principal coordinates.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"vectors must be [N, D] with N >= 1, not {x.shape}")
    start = _pca_start(x)
    if len(x) < 4:
        return orient(start, start)
    reducer = umap_with_cached_kernels().UMAP(
        n_neighbors=min(NEIGHBOURS, len(x) - 1),
        min_dist=MIN_DIST,
        metric="cosine",
        init=start,
        random_state=seed,  # and one thread: the same map every time
        n_jobs=1,
        n_epochs=n_epochs,
        low_memory=True,
        transform_seed=seed,
    )
    coords = reducer.fit_transform(x)
    return orient(coords, start)


def group_labels(
    labels: np.ndarray, class_groups: list[str], unknown: str = ""
) -> tuple[np.ndarray, list[str]]:
    """(group index of each image, -1 outside every group; group names) from each image's
    class and each class's group (its band, ``unknown`` for none)."""
    names = sorted({g for g in class_groups if g != unknown})
    index = {g: i for i, g in enumerate(names)}
    of_class = np.array([index.get(g, -1) for g in class_groups], dtype=np.int64)
    return of_class[np.asarray(labels, dtype=np.int64)], names


def sample_rows(n: int, most: int = SILHOUETTE_SAMPLE, seed: int = 0) -> np.ndarray:
    """At most ``most`` of ``n`` row indices, ascending, the same for the same n and seed."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, most, replace=False))


def silhouette(
    vectors: np.ndarray, groups: np.ndarray, most: int = SILHOUETTE_SAMPLE, seed: int = 0
) -> float | None:
    """Mean silhouette under cosine distance of the images in groups (``groups`` >= 0) on a
    fixed-seed sample of at most ``most`` of them: near 1 when each group is a tight cluster
    apart from the others, near 0 when groups overlap. None with fewer than two groups.

    As scikit-learn's ``silhouette_score(metric="cosine")``: an image alone in its group
    scores 0.
    """
    g = np.asarray(groups, dtype=np.int64)
    keep = np.flatnonzero(g >= 0)
    keep = keep[sample_rows(len(keep), most, seed)]
    g = np.unique(g[keep], return_inverse=True)[1].reshape(-1)
    k = int(g.max()) + 1 if g.size else 0
    if k < 2 or k >= len(keep):
        return None
    u = unit_rows(np.asarray(vectors)[keep])
    onehot = np.zeros((len(keep), k), dtype=np.float32)
    onehot[np.arange(len(keep)), g] = 1.0
    sizes = onehot.sum(axis=0)
    scores = np.empty(len(keep), dtype=np.float64)
    for start in range(0, len(keep), _BLOCK):
        rows = slice(start, start + _BLOCK)
        dist = np.clip(1.0 - u[rows] @ u.T, 0.0, 2.0)  # cosine distance [b, n]
        sums = dist @ onehot  # [b, k]: summed distance to each group
        own = g[rows]
        b_rows = np.arange(len(own))
        same = sizes[own] - 1  # the image itself is at distance 0 from itself
        a = np.where(same > 0, sums[b_rows, own] / np.maximum(same, 1), 0.0)
        other = sums / sizes
        other[b_rows, own] = np.inf
        b = other.min(axis=1)
        s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
        scores[rows] = np.where(same > 0, s, 0.0)
    return float(scores.mean())
