"""Class orders for the matrix's axes: permutations of class indices, display slot first.

``order[slot] = class index``; ``positions(order)[class index] = slot``. The ``wordnet`` order
is the hierarchy order: WordNet for ImageNet classes, or the run's own hierarchy.tsv; a run
with neither gets the clustered order under that name, so the default view has structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from epochscope.analysis.confusion import Confusion
from epochscope.catalogue import Catalogue, load_catalogue
from epochscope.hierarchy import Taxonomy

if TYPE_CHECKING:  # imported where used: scipy by the clustered order only
    from scipy import sparse

OrderKind = Literal["wordnet", "index", "cluster"]
ORDERS: tuple[OrderKind, ...] = ("wordnet", "index", "cluster")

# Hierarchical clustering needs the dense [C, C] similarity and O(C^2) distances; above this
# many classes the order comes from a sparse graph instead.
LINKAGE_LIMIT = 2500
# optimal_leaf_ordering is O(C^3) in the worst case: seconds at 1000 classes, so only below this
OLO_LIMIT = 400


def index_order(num_classes: int) -> np.ndarray:
    return np.arange(num_classes, dtype=np.int64)


def wordnet_order(
    wnids: Sequence[str], catalogue: Catalogue | Taxonomy | None = None
) -> np.ndarray:
    """Hierarchy display order: WordNet's (animals first, then artifacts) for ImageNet wnids,
    or a run hierarchy's depth-first order.

    Classes the hierarchy does not know keep their index order after the known ones.
    """
    return (catalogue or load_catalogue()).display_order(list(wnids))


def positions(order: np.ndarray) -> np.ndarray:
    """The inverse permutation: the display slot of each class index."""
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    return pos


def is_permutation(order: np.ndarray, n: int) -> bool:
    return len(order) == n and np.array_equal(np.sort(order), np.arange(n))


def _similarity(conf: Confusion) -> sparse.csr_matrix:
    from scipy import sparse

    """Symmetrised, row-normalised off-diagonal confusions: how much a and b are mixed up."""
    c = conf.num_classes
    off = conf.rows != conf.cols
    rows, cols = conf.rows[off], conf.cols[off]
    # normalise by the class's images so big classes do not dominate the clustering
    images = np.maximum(conf.images, 1).astype(np.float64)
    share = conf.counts[off] / images[rows]
    p = sparse.csr_matrix((share, (rows, cols)), shape=(c, c))
    return ((p + p.T) * 0.5).tocsr()


def cluster_order(conf: Confusion) -> np.ndarray:
    """An order that puts classes confused with each other next to each other.

    Up to ``LINKAGE_LIMIT`` classes: average-linkage clustering of the cosine distances between
    the rows of the similarity (each row with itself as its nearest neighbour, so a pair that
    only confuses each other still clusters), leaves in dendrogram order. Above it: reverse
    Cuthill-McKee on the graph of each class's strongest confusions, a bandwidth-reducing
    seriation that stays sparse.
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import pdist

    c = conf.num_classes
    if c <= 2:
        return index_order(c)
    sim = _similarity(conf)
    if c <= LINKAGE_LIMIT:
        dense = sim.toarray()
        top = dense.max(axis=1)
        np.fill_diagonal(dense, np.where(top > 0, top, 1.0))
        dist = pdist(dense, metric="cosine")
        np.nan_to_num(dist, copy=False, nan=1.0)
        z = hierarchy.linkage(dist, method="average")
        if c <= OLO_LIMIT:
            z = hierarchy.optimal_leaf_ordering(z, dist)
        return hierarchy.leaves_list(z).astype(np.int64)
    return _rcm_order(sim, keep=8)


def _rcm_order(sim: sparse.csr_matrix, keep: int, strong: float = 0.25) -> np.ndarray:
    from scipy import sparse
    from scipy.sparse import csgraph

    """Reverse Cuthill-McKee over each class's ``keep`` strongest confusions (those at least
    ``strong`` times its strongest)."""
    c = sim.shape[0]
    rows, cols, vals = [], [], []
    for i in range(c):
        start, stop = sim.indptr[i], sim.indptr[i + 1]
        if stop == start:
            continue
        idx = sim.indices[start:stop]
        val = sim.data[start:stop]
        best = np.argsort(val)[::-1][:keep]
        # weak links (chance confusions) would chain unrelated groups in the breadth-first walk
        best = best[val[best] >= strong * val[best[0]]]
        rows.append(np.full(len(best), i))
        cols.append(idx[best])
        vals.append(val[best])
    if not rows:
        return index_order(c)
    g = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(c, c)
    )
    g = ((g + g.T) > 0).astype(np.int8).tocsr()
    return csgraph.reverse_cuthill_mckee(g, symmetric_mode=True).astype(np.int64)


def class_order(
    kind: OrderKind,
    wnids: Sequence[str],
    conf: Confusion | None = None,
    hierarchy: Catalogue | Taxonomy | None = None,
) -> np.ndarray:
    """The display order of ``kind``; ``cluster`` needs the epoch's confusion.

    ``hierarchy``: the run's own (a Taxonomy) or the ImageNet catalogue (the default)."""
    if kind == "wordnet":
        return wordnet_order(wnids, hierarchy)
    if kind == "index":
        return index_order(len(wnids))
    if kind == "cluster":
        if conf is None:
            raise ValueError("the cluster order needs a confusion histogram")
        return cluster_order(conf)
    raise ValueError(f"unknown order {kind!r}: expected one of {ORDERS}")
