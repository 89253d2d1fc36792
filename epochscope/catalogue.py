"""The ImageNet class catalogue: 1000 ILSVRC-2012 classes, their WordNet hierarchy and bands.

Reads the committed ``assets/imagenet/*.tsv`` (built by ``assets.build_catalogue``); needs
neither WordNet nor a network. Shared by the trainer (demo data, class names) and the dashboard
(labels, WordNet paths, confusion-matrix order and bands, relatedness of mistakes).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from epochscope.hierarchy import distance_matrix as hierarchy_distances

# the data stays in assets/ (built by assets/build_catalogue.py); epochscope owns reading it
DATA_DIR = Path(__file__).resolve().parent.parent / "assets" / "imagenet"
ROOT_WNID = "n00001740"  # entity
ANIMAL_WNID = "n00015388"
DOG_WNID = "n02084071"


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    name: str
    lemmas: tuple[str, ...]
    band: str


@dataclass(frozen=True)
class Band:
    """A run of consecutive display positions [start, stop) sharing a super-category."""

    name: str
    start: int
    stop: int


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


class Catalogue:
    """Look-ups over the 1000 classes and every WordNet ancestor up to ``entity``."""

    def __init__(self, data_dir: Path = DATA_DIR) -> None:
        order_rows = _read_tsv(data_dir / "order.tsv")
        band_by_wnid = {r["wnid"]: r["band"] for r in order_rows}
        self.classes: list[ImageNetClass] = [
            ImageNetClass(
                index=int(r["index"]),
                wnid=r["wnid"],
                name=r["name"],
                lemmas=tuple(r["lemmas"].split(", ")),
                band=band_by_wnid[r["wnid"]],
            )
            for r in _read_tsv(data_dir / "classes.tsv")
        ]
        self._by_wnid = {c.wnid: c for c in self.classes}
        #: class indices in display order (WordNet depth-first, animals first)
        self.order = np.array([int(r["index"]) for r in order_rows], dtype=np.int64)
        self._parents: dict[str, list[str]] = {}
        self._synset_names: dict[str, str] = {}
        for r in _read_tsv(data_dir / "hierarchy.tsv"):
            self._synset_names[r["wnid"]] = r["name"]
            parents = self._parents.setdefault(r["wnid"], [])
            if r["parent_wnid"]:
                parents.append(r["parent_wnid"])

    # --- single classes -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._by_wnid

    def by_wnid(self, wnid: str) -> ImageNetClass:
        try:
            return self._by_wnid[wnid]
        except KeyError:
            raise KeyError(f"{wnid!r} is not one of the 1000 ImageNet classes") from None

    def band_of(self, wnid: str) -> str:
        """The band (super-category) name of a class: the look-up order, bands and relatedness
        share with a run's own hierarchy (epochscope.hierarchy.Taxonomy)."""
        return self.by_wnid(wnid).band

    def synset_name(self, wnid: str) -> str:
        """Readable name of any synset in the hierarchy (a class or an ancestor)."""
        if wnid in self._by_wnid:
            return self._by_wnid[wnid].name
        return self._synset_names[wnid]

    def parents(self, wnid: str) -> tuple[str, ...]:
        return tuple(self._parents[wnid])

    def path_to_root(self, wnid: str) -> list[str]:
        """wnid, its first parent, that one's first parent, ... up to ``entity``."""
        path = [wnid]
        while self._parents[path[-1]]:
            path.append(self._parents[path[-1]][0])
        return path

    def ancestors(self, wnid: str) -> dict[str, int]:
        """Every ancestor (the class itself included) with its shortest distance upwards."""
        return dict(self._up_distances[wnid])

    def distance(self, a: str, b: str) -> int:
        """WordNet distance: the fewest hypernym links from a up to a common ancestor and down."""
        up_a, up_b = self._up_distances[a], self._up_distances[b]
        return min(d + up_b[s] for s, d in up_a.items() if s in up_b)

    def descendants(self, wnid: str) -> list[int]:
        """Class indices (index order) of the classes under ``wnid`` (itself included)."""
        return [c.index for c in self.classes if wnid in self._up_distances[c.wnid]]

    # --- many classes ---------------------------------------------------------------------
    def bands(self, order: Sequence[int] | np.ndarray | None = None) -> list[Band]:
        """Contiguous band runs along a display order of class indices (default: self.order)."""
        order = self.order if order is None else order
        runs: list[Band] = []
        for pos, index in enumerate(order):
            name = self.classes[int(index)].band
            if runs and runs[-1].name == name:
                runs[-1] = Band(name, runs[-1].start, pos + 1)
            else:
                runs.append(Band(name, pos, pos + 1))
        return runs

    def display_order(self, wnids: Sequence[str]) -> np.ndarray:
        """Permutation of a run's classes (given by wnid) into WordNet display order.

        Classes the catalogue does not know go last, in their given order.
        """
        position = np.empty(len(self.classes), dtype=np.int64)
        position[self.order] = np.arange(len(self.order))
        keys = [
            (position[self._by_wnid[w].index], i) if w in self._by_wnid else (10**9 + i, i)
            for i, w in enumerate(wnids)
        ]
        return np.array([i for _, i in sorted(keys)], dtype=np.int64)

    def distance_matrix(self, wnids: Sequence[str] | None = None) -> np.ndarray:
        """uint8 [n, n] WordNet distances between classes (default: all 1000, index order).

        Unknown wnids get 255 against every other class (0 to themselves).
        """
        wnids = [c.wnid for c in self.classes] if wnids is None else list(wnids)
        known = {w: self._up_distances[w] for w in wnids if w in self._by_wnid}
        return hierarchy_distances(wnids, known)

    @cached_property
    def _up_distances(self) -> dict[str, dict[str, int]]:
        memo: dict[str, dict[str, int]] = {}

        def up(wnid: str) -> dict[str, int]:
            if wnid not in memo:
                dist = {wnid: 0}
                for p in self._parents[wnid]:
                    for s, d in up(p).items():
                        if d + 1 < dist.get(s, 1 << 30):
                            dist[s] = d + 1
                memo[wnid] = dist
            return memo[wnid]

        for wnid in self._parents:
            up(wnid)
        return memo


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    """The committed catalogue, read once per process."""
    return Catalogue()
