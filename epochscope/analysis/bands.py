"""Super-category bands (dogs, birds, vehicles, ...) along a display order of a run's classes.

The bands come from WordNet for ImageNet classes, or from the run's own hierarchy.tsv
(epochscope.hierarchy.Taxonomy): anything with ``band_of`` and ``in``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from epochscope.catalogue import Band, Catalogue, load_catalogue
from epochscope.hierarchy import Taxonomy

UNKNOWN = ""  # the band of a class WordNet does not know: drawn as no strip


def class_bands(wnids: Sequence[str], catalogue: Catalogue | Taxonomy | None = None) -> list[str]:
    """The band name of each run class (index order); UNKNOWN outside the hierarchy."""
    cat = catalogue or load_catalogue()
    return [cat.band_of(w) if w in cat else UNKNOWN for w in wnids]


ANIMAL, ARTIFACT = "n00015388", "n00021939"  # WordNet: animal, artifact


def class_groups(wnids: Sequence[str], catalogue: Catalogue | None = None) -> list[str]:
    """The top of the hierarchy each class sits under: "animals", "objects" (artifacts) or
    "other" (food, plants, landscapes, people); UNKNOWN outside the catalogue."""
    cat = catalogue or load_catalogue()
    out = []
    for w in wnids:
        if w not in cat:
            out.append(UNKNOWN)
            continue
        up = cat.ancestors(w)
        out.append("animals" if ANIMAL in up else "objects" if ARTIFACT in up else "other")
    return out


def band_runs(names: Sequence[str], order: np.ndarray) -> list[Band]:
    """Contiguous runs of equal band names along ``order`` (slot -> class index)."""
    runs: list[Band] = []
    for slot, index in enumerate(order):
        name = names[int(index)]
        if runs and runs[-1].name == name:
            runs[-1] = Band(name, runs[-1].start, slot + 1)
        else:
            runs.append(Band(name, slot, slot + 1))
    return runs


def visible_runs(runs: Sequence[Band], lo: float, hi: float) -> list[Band]:
    """The runs overlapping [lo, hi), cut to it (start/stop may become fractional)."""
    out = []
    for b in runs:
        if b.stop > lo and b.start < hi and b.name != UNKNOWN:
            out.append(Band(b.name, max(b.start, lo), min(b.stop, hi)))  # type: ignore[arg-type]
    return out
