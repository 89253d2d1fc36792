"""How related a model's mistakes are to the true class, as numbers per epoch.

The seed's closing point ("top-5 misclassifications have to be related to the true class") made
measurable: of the wrong top-5 guesses, the share in the true class's band (dogs for a dog), the
share that shares a WordNet parent with it (a sibling synset), and their mean WordNet distance.
Chance levels (wrong guesses drawn uniformly from the other classes) give each a baseline.
The hierarchy is WordNet for ImageNet classes, or the run's own hierarchy.tsv (a Taxonomy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from epochscope.analysis.confusion import Mode, guesses
from epochscope.catalogue import Catalogue, load_catalogue
from epochscope.hierarchy import Taxonomy


@dataclass(frozen=True, eq=False)
class Relations:
    """Pairwise relations between the run's classes that WordNet knows; built once per run.

    Matrices are over the known classes only (at most the catalogue's 1000), so a run of
    10,000 classes of which few are ImageNet's stays small.
    """

    compact: np.ndarray  # int64 [C]: row of each run class in the matrices, -1 when unknown
    same_band: np.ndarray  # bool [K, K]
    same_parent: np.ndarray  # bool [K, K]
    distance: np.ndarray  # float32 [K, K] WordNet distance
    band_names: np.ndarray | None = None  # object [K]: the band of each known class
    source: str = "WordNet"  # what the distances are measured in

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes for a in (self.compact, self.same_band, self.same_parent, self.distance)
        )


def relations(wnids: Sequence[str], catalogue: Catalogue | Taxonomy | None = None) -> Relations:
    """Band, parent and distance relations of a run's classes (given by wnid) in WordNet (the
    default) or the run's own hierarchy."""
    cat = catalogue or load_catalogue()
    wnids = list(wnids)
    known = [w for w in wnids if w in cat]
    compact = np.full(len(wnids), -1, dtype=np.int64)
    row = {w: j for j, w in enumerate(dict.fromkeys(known))}
    for i, w in enumerate(wnids):
        compact[i] = row.get(w, -1)
    known = list(row)
    bands = np.array([cat.band_of(w) for w in known], dtype=object)
    same_band = bands[:, None] == bands[None, :]
    parent_sets = [set(cat.parents(w)) for w in known]
    parents = sorted(set().union(*parent_sets))
    column = {p: j for j, p in enumerate(parents)}
    member = np.zeros((len(known), len(parents)), dtype=np.float32)
    for i, ps in enumerate(parent_sets):
        for p in ps:
            member[i, column[p]] = 1.0
    same_parent = (member @ member.T) > 0
    distance = cat.distance_matrix(known).astype(np.float32)
    source = "hierarchy" if isinstance(cat, Taxonomy) else "WordNet"
    return Relations(compact, same_band.astype(bool), same_parent, distance, bands, source)


@dataclass(frozen=True)
class Relatedness:
    """Relatedness of the wrong guesses of one epoch; NaN where nothing could be measured."""

    wrong: int  # wrong guesses counted (both classes known to WordNet)
    same_band: float  # share of wrong guesses in the true class's band
    same_parent: float  # share sharing a direct WordNet parent with the true class
    mean_distance: float  # mean WordNet distance between true class and wrong guess
    chance_same_band: float  # the same numbers for uniformly random wrong guesses
    chance_same_parent: float
    chance_distance: float
    # per band of the true class: (band, wrong guesses, share of them in that band)
    by_band: tuple[tuple[str, int, float], ...] = ()
    source: str = "WordNet"


def relatedness(
    labels: np.ndarray, top5: np.ndarray, rel: Relations, mode: Mode = "top5"
) -> Relatedness:
    """Relatedness of every wrong guess (top-5 by default) to its image's true class."""
    pred = guesses(np.asarray(top5), mode)
    true = np.broadcast_to(np.asarray(labels)[:, None], pred.shape)
    wrong = pred != true
    t, p = rel.compact[true[wrong]], rel.compact[pred[wrong]]
    ok = (t >= 0) & (p >= 0)
    t, p = t[ok], p[ok]
    # chance: for each known true class, a wrong guess uniform over the other known classes
    n_known = len(rel.distance)
    off = ~np.eye(n_known, dtype=bool)

    def chance(m: np.ndarray) -> float:
        return float(m[off].mean()) if n_known > 1 else math.nan

    if len(t) == 0:
        observed = (math.nan, math.nan, math.nan)
    else:
        observed = (
            float(rel.same_band[t, p].mean()),
            float(rel.same_parent[t, p].mean()),
            float(rel.distance[t, p].mean()),
        )
    by_band: list[tuple[str, int, float]] = []
    if rel.band_names is not None and len(t):
        names = rel.band_names[t]
        inside = rel.same_band[t, p]
        for band in dict.fromkeys(rel.band_names.tolist()):
            if not band:
                continue
            mine = names == band
            if mine.any():
                by_band.append((band, int(mine.sum()), float(inside[mine].mean())))
    return Relatedness(
        by_band=tuple(by_band),
        source=rel.source,
        wrong=len(t),
        same_band=observed[0],
        same_parent=observed[1],
        mean_distance=observed[2],
        chance_same_band=chance(rel.same_band),
        chance_same_parent=chance(rel.same_parent),
        chance_distance=chance(rel.distance),
    )
