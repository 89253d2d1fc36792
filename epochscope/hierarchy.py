"""A run's own class hierarchy (hierarchy.tsv): order, bands and relatedness for any taxonomy.

ImageNet runs get WordNet from assets/imagenet; any other dataset (CIFAR-100's 20 superclasses,
iNaturalist's tree of life, a product catalogue) can carry its hierarchy in the run directory::

    id<TAB>parent<TAB>name      header row
    apple<TAB>fruit_and_vegetables<TAB>apple
    fruit_and_vegetables<TAB><TAB>fruit and vegetables

One row per link from a node to a parent (a node may have several parents, as in WordNet; the
first one listed is its main one). Class nodes are classes.tsv's ``wnid`` column; an empty
parent makes a root. The bands are the roots, or, when there is one root, the first level below
it that branches. Nodes under no common root are joined by a virtual root for distances.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from epochscope.layout import HIERARCHY_HEADER, HIERARCHY_TSV
from epochscope.tsv import read_tsv, tsv_bytes

#: more links than this is not a class hierarchy a dashboard should walk
MAX_LINKS = 1_000_000
#: more levels than this from a node up to a root is not a class hierarchy either (WordNet's
#: deepest ImageNet class is 19 links below "entity"); hierarchy.tsv's bytes are capped by
#: epochscope.layout.CAPS
MAX_DEPTH = 100
_ROOT = "\x00root"  # the virtual root above every real root (never a real id: NUL is refused)


class Taxonomy:
    """Look-ups over a class hierarchy, as epochscope.catalogue.Catalogue gives them for WordNet."""

    def __init__(self, links: Iterable[tuple[str, str]], names: Mapping[str, str] | None = None):
        self._parents: dict[str, list[str]] = {}
        for child, parent in links:
            for node in (child, parent):
                if not isinstance(node, str) or "\x00" in node or len(node) > 1000:
                    raise ValueError(f"hierarchy: bad node id {node!r}")
            if not child:
                raise ValueError("hierarchy: a row has an empty id")
            ps = self._parents.setdefault(child, [])
            if parent:
                self._parents.setdefault(parent, [])
                if parent not in ps and parent != child:
                    ps.append(parent)
        if len(self._parents) > MAX_LINKS:
            raise ValueError(f"hierarchy: over {MAX_LINKS} nodes")
        self.names = {n: (names or {}).get(n) or n for n in self._parents}
        self._children: dict[str, list[str]] = {n: [] for n in self._parents}
        for child, ps in self._parents.items():
            for p in ps:
                self._children[p].append(child)
        self.roots = [n for n, ps in self._parents.items() if not ps]
        self._check_shape()  # refuses cycles and chains deeper than MAX_DEPTH
        self._up: dict[str, dict[str, int]] = {}  # ancestors of the nodes asked about only
        self._band_nodes = self._band_level()

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str | Sequence[str] | None]) -> Taxonomy:
        """``{child: parent}`` (or ``{child: [parents]}``); groups may have parents too."""
        links: list[tuple[str, str]] = []
        for child, parent in mapping.items():
            parents = [parent] if isinstance(parent, str) or parent is None else list(parent)
            links += [(str(child), str(p or "")) for p in parents] or [(str(child), "")]
        return cls(links)

    @classmethod
    def read(
        cls, path: str | os.PathLike[str], within: str | os.PathLike[str] | None = None
    ) -> Taxonomy:
        """A hierarchy TSV (header ``id parent name``); LookupError if missing, ValueError if
        malformed (cycles included), too large or too deep. ``within``: the run directory it
        must not leave through a link."""
        rows = read_tsv(path, HIERARCHY_HEADER, within)
        if len(rows) > MAX_LINKS:
            raise ValueError(f"{path}: over {MAX_LINKS} rows")
        names = {i: n for i, _, n in rows if n}
        try:
            return cls(((i, p) for i, p, _ in rows), names)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def tsv(self) -> bytes:
        """This hierarchy as hierarchy.tsv bytes."""
        rows = []
        for node, ps in self._parents.items():
            for p in ps or [""]:
                rows.append((node, p, self.names[node]))
        return tsv_bytes(HIERARCHY_HEADER, rows)

    # --- single nodes -------------------------------------------------------------------------
    def __contains__(self, node: object) -> bool:
        return node in self._parents

    def __len__(self) -> int:
        return len(self._parents)

    def parents(self, node: str) -> tuple[str, ...]:
        return tuple(self._parents[node])

    def name(self, node: str) -> str:
        return self.names[node]

    def path_to_root(self, node: str) -> list[str]:
        """``node``, its main parent, that one's main parent, ... up to a root."""
        path = [node]
        while self._parents[path[-1]]:
            path.append(self._parents[path[-1]][0])
        return path

    def band_of(self, node: str) -> str:
        """The readable name of the node's band ("" when it sits above the band level)."""
        for n in self.path_to_root(node):
            if n in self._band_nodes:
                return self.names[n] if n != node else ""
        return ""

    def band_names(self) -> list[str]:
        """Band names in display order."""
        return [self.names[n] for n in self._walk() if n in self._band_nodes]

    # --- many nodes ---------------------------------------------------------------------------
    def display_order(self, ids: Sequence[str]) -> np.ndarray:
        """Permutation of a run's classes (given by id) into depth-first hierarchy order
        (children in file order); classes the hierarchy does not name go last, in index order."""
        slot = {n: i for i, n in enumerate(self._walk())}
        big = len(slot)
        keys = sorted((slot.get(w, big), i) for i, w in enumerate(ids))
        return np.array([i for _, i in keys], dtype=np.int64)

    def distance(self, a: str, b: str) -> int:
        """The fewest links from ``a`` up to a common ancestor and down to ``b``."""
        up_a, up_b = self.ancestors(a), self.ancestors(b)
        return min(d + up_b[s] for s, d in up_a.items() if s in up_b)

    def distance_matrix(self, ids: Sequence[str]) -> np.ndarray:
        """uint8 [n, n] distances (254 at most); ids not in the hierarchy get 255."""
        ids = list(ids)
        return distance_matrix(ids, {w: self.ancestors(w) for w in ids if w in self})

    def ancestors(self, node: str) -> dict[str, int]:
        """Every ancestor of ``node`` (itself and the virtual root included) with its shortest
        distance upwards. Computed for the nodes asked about only (a class's ancestors are at
        most MAX_DEPTH levels), never for every node: memory grows with the classes asked
        about, not with the square of the hierarchy's depth."""
        found = self._up.get(node)
        if found is None:
            found = {node: 0}
            frontier, d = [node], 0
            while frontier:  # breadth first: the first reach of an ancestor is the shortest
                d += 1
                above = []
                for n in frontier:
                    for p in self._parents[n] or [_ROOT]:
                        if p not in found:
                            found[p] = d
                            if p != _ROOT:
                                above.append(p)
                frontier = above
            self._up[node] = found
        return found

    # --- internals ----------------------------------------------------------------------------
    def _walk(self) -> list[str]:
        """Every node once, depth-first from the roots in file order (iterative: deep trees)."""
        seen: set[str] = set()
        out: list[str] = []
        stack = list(reversed(self.roots))
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            out.append(n)
            stack.extend(reversed(self._children[n]))
        return out

    def _check_shape(self) -> None:
        """ValueError on a cycle, or on a node more than MAX_DEPTH links above a root (one pass
        in topological order, parents before children: linear in the links)."""
        depth: dict[str, int] = {}  # the longest way up to a root
        indegree = {n: len(ps) for n, ps in self._parents.items()}
        ready = [n for n, d in indegree.items() if d == 0]
        while ready:
            n = ready.pop()
            depth[n] = 1 + max((depth[p] for p in self._parents[n]), default=-1)
            if depth[n] > MAX_DEPTH:
                raise ValueError(
                    f"hierarchy is over {MAX_DEPTH} levels deep (at {n!r}): a class hierarchy "
                    f"has at most {MAX_DEPTH} levels from a class to its root"
                )
            for c in self._children[n]:
                indegree[c] -= 1
                if indegree[c] == 0:
                    ready.append(c)
        if len(depth) != len(self._parents):
            stuck = sorted(n for n, d in indegree.items() if d > 0)[:3]
            raise ValueError(f"hierarchy has a cycle (through {', '.join(map(repr, stuck))})")

    def _band_level(self) -> set[str]:
        level = list(self.roots)
        # one root over everything ("entity", "life"): its children name the bands instead
        while len(level) == 1 and len(self._children[level[0]]) >= 1:
            kids = self._children[level[0]]
            if all(not self._children[k] for k in kids):
                break  # the children are the classes themselves: the root is the only band
            level = kids
        return set(level)


def read_hierarchy(run_dir: str | os.PathLike[str]) -> Taxonomy | None:
    """The run's hierarchy.tsv, or None when it has none; ValueError when it is malformed."""
    try:  # no stat first: a Run reads each file once
        return Taxonomy.read(Path(run_dir) / HIERARCHY_TSV, within=run_dir)
    except LookupError:
        return None


def as_taxonomy(hierarchy: object) -> Taxonomy:
    """What ``init(hierarchy=...)`` and ``--hierarchy`` accept: a Taxonomy, a path to a
    hierarchy TSV, or a ``{child: parent}`` mapping. ValueError naming ``hierarchy`` else."""
    if isinstance(hierarchy, Taxonomy):
        return hierarchy
    if isinstance(hierarchy, Mapping):
        return Taxonomy.from_mapping(hierarchy)
    if isinstance(hierarchy, str | os.PathLike):
        try:
            return Taxonomy.read(hierarchy)
        except LookupError:
            raise ValueError(f"hierarchy: no file {os.fspath(hierarchy)!r}") from None
    raise ValueError(
        f"hierarchy must be a path to a hierarchy TSV or a {{child: parent}} mapping, "
        f"not {type(hierarchy).__name__}"
    )


def distance_matrix(ids: Sequence[str], up: dict[str, dict[str, int]]) -> np.ndarray:
    """uint8 [n, n] links between ids through their nearest common ancestor, 254 at most, from
    each id's ancestors with their distances (``up``); ids not in ``up`` get 255 (0 to
    themselves). One vectorised pass per row over the ancestors of all ids."""
    ids = list(ids)
    ancestors = sorted({s for w in ids if w in up for s in up[w]})
    column = {s: j for j, s in enumerate(ancestors)}
    big = 1 << 20
    table = np.full((len(ids), len(ancestors)), big, dtype=np.int32)
    for i, w in enumerate(ids):
        for s, d in up.get(w, {}).items():
            table[i, column[s]] = d
    out = np.full((len(ids), len(ids)), 255, dtype=np.uint8)
    for i in range(len(ids)):
        cols = np.flatnonzero(table[i] < big)
        if cols.size:
            best = (table[:, cols] + table[i, cols]).min(axis=1)
            out[i] = np.where(best < big, np.minimum(best, 254), 255)
        out[i, i] = 0
    return out
