"""Validation embeddings: the network's penultimate features, stored compactly per epoch.

A classifier's features are wide (512 for ResNet-18, 2,048 for ResNet-50) and 50,000 of them in
float32 are 400 MB an epoch. What a map and a nearest-neighbour search need survives a PCA to at
most :data:`MAX_DIMS` dimensions stored in float16 (50,000 x 128 x 2 bytes = 12.8 MB), as long as
the projection is kept: a new photo's features go through the same ``(x - mean) @ components.T``
and land in the same space as the validation images (docs/run-directory.md,
``embeddings/epoch-NNNN.npz``).

The PCA is fitted on at most :data:`FIT_ROWS` evenly spaced rows (a covariance of 8,192 rows is
as good as of 50,000 for the leading components, and costs a sixth), in float64, by an
eigendecomposition of the F x F covariance. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the most dimensions an epoch's stored vectors have
MAX_DIMS = 128
#: the PCA is fitted on at most this many evenly spaced rows
FIT_ROWS = 8192
#: the widest features a projection may take (a ViT-H has 1,280, a ConvNeXt-XL 2,048)
MAX_FEATURES = 16384
#: what a view says of a run or epoch without embeddings
EMBEDDINGS_MISSING = (
    "no validation embeddings were stored: runs trained or logged before Epochscope stored them, "
    "or with log_predictions(...) called without features=, have none"
)
#: rows projected or searched per block: bounds the temporary memory of large sets
_BLOCK_ROWS = 65536


@dataclass(frozen=True)
class Projection:
    """``(features - mean) @ components.T``: features [N, F] -> vectors [N, D]."""

    mean: np.ndarray  # float32 [F]
    components: np.ndarray  # float32 [D, F], orthonormal rows, by falling variance

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def features(self) -> int:
        return int(self.components.shape[1])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """float32 [N, D] of ``features`` [N, F] (or [F] -> [D])."""
        x = np.asarray(features, dtype=np.float32)
        if x.shape[-1] != self.features:
            raise ValueError(
                f"features have {x.shape[-1]} dimensions, this projection takes {self.features}"
            )
        if x.ndim == 1:
            return (x - self.mean) @ self.components.T
        out = np.empty((len(x), self.dims), dtype=np.float32)
        for start in range(0, len(x), _BLOCK_ROWS):
            block = x[start : start + _BLOCK_ROWS]
            out[start : start + len(block)] = (block - self.mean) @ self.components.T
        return out


def check_features(features: np.ndarray, num_rows: int | None = None) -> np.ndarray:
    """``features`` as a finite float32 [N, F] array; ValueError naming what is wrong."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"features must be [N, F] (one row per validation image), not {x.shape}")
    if x.shape[1] > MAX_FEATURES:
        raise ValueError(f"features have {x.shape[1]} dimensions, more than {MAX_FEATURES}")
    if num_rows is not None and len(x) != num_rows:
        raise ValueError(f"{len(x)} feature rows for {num_rows} validation images: one per image")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"features must be numbers, not {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():  # a diverged model: zeros keep the rows, the map says nothing
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


def fit_projection(
    features: np.ndarray, dims: int = MAX_DIMS, fit_rows: int = FIT_ROWS
) -> Projection:
    """The PCA of ``features`` [N, F] to min(dims, F, N) dimensions (see the module's doc)."""
    x = check_features(features)
    n, f = x.shape
    step = max(1, -(-n // fit_rows))
    sample = x[::step].astype(np.float64)
    mean = sample.mean(axis=0) if len(sample) else np.zeros(f)
    centred = sample - mean
    cov = centred.T @ centred
    _, vectors = np.linalg.eigh(cov)  # eigenvalues ascending
    d = max(1, min(dims, f, max(n, 1)))
    components = vectors[:, ::-1][:, :d].T
    # a sign per component so that the same features always give the same vectors
    flip = np.sign(components[np.arange(d), np.abs(components).argmax(axis=1)])
    components = components * np.where(flip == 0, 1.0, flip)[:, None]
    return Projection(mean.astype(np.float32), np.ascontiguousarray(components, np.float32))


@dataclass(frozen=True)
class Embeddings:
    """An epoch's stored embeddings: ``vectors`` float16 [N, D] in val_index.tsv order and the
    ``projection`` that made them from the model's features."""

    vectors: np.ndarray
    projection: Projection

    @property
    def nbytes(self) -> int:
        p = self.projection
        return int(self.vectors.nbytes + p.mean.nbytes + p.components.nbytes)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the epoch's file holds (names as in docs/run-directory.md)."""
        return {
            "vectors": self.vectors,
            "mean": self.projection.mean,
            "components": self.projection.components,
        }


def embed(features: np.ndarray, dims: int = MAX_DIMS) -> Embeddings:
    """Fit the projection on ``features`` and project them: what an epoch stores."""
    x = check_features(features)
    projection = fit_projection(x, dims)
    return Embeddings(projection(x).astype(np.float16), projection)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to length 1 (a zero row stays zero): cosine similarity is then a
    dot product."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def nearest(
    unit_vectors: np.ndarray, query: np.ndarray, k: int = 10, exclude: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine distances) of the ``k`` rows of ``unit_vectors`` [N, D] nearest to
    ``query`` [D] (not necessarily unit length), closest first; ``exclude`` leaves one row out
    (an image is not its own neighbour). Exact: one matrix-vector product and a partial sort."""
    q = unit_rows(np.asarray(query, dtype=np.float32).reshape(-1))
    n = len(unit_vectors)
    if q.shape[0] != unit_vectors.shape[1]:
        raise ValueError(f"query has {q.shape[0]} dimensions, the vectors {unit_vectors.shape[1]}")
    similarity = np.empty(n, dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS * 4):
        block = unit_vectors[start : start + _BLOCK_ROWS * 4]
        np.dot(block, q, out=similarity[start : start + len(block)])
    if exclude is not None and 0 <= exclude < n:
        similarity[exclude] = -np.inf
    k = max(0, min(int(k), n - (exclude is not None and 0 <= exclude < n)))
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    part = np.argpartition(-similarity, k - 1)[:k]
    order = part[np.lexsort((part, -similarity[part]))]  # by similarity, ties by index
    return order.astype(np.int64), (1.0 - similarity[order]).astype(np.float32)
