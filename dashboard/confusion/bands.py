"""Super-category bands (dogs, birds, vehicles, ...) along a display order of a run's classes.

The bands come from WordNet for ImageNet classes, or from the run's own hierarchy.tsv
(epochscope.hierarchy.Taxonomy): anything with ``band_of`` and ``in``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from assets.catalogue import Band, Catalogue, load_catalogue
from epochscope.hierarchy import Taxonomy

UNKNOWN = ""  # the band of a class WordNet does not know: drawn as no strip

# Qualitative colours, assigned to band names in the catalogue's display order so that a band
# keeps its colour across runs and orders.
_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#d62728",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#c49c94",
    "#f7b6d2",
    "#c5b0d5",
    "#9edae5",
    "#dbdb8d",
    "#393b79",
)


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


def band_colours(catalogue: Catalogue | None = None) -> dict[str, str]:
    cat = catalogue or load_catalogue()
    names = list(dict.fromkeys(b.name for b in cat.bands()))
    return {n: _COLOURS[i % len(_COLOURS)] for i, n in enumerate(names)}


def band_colour(name: str) -> str:
    """WordNet bands keep their catalogue colour; a run hierarchy's bands get one from their
    name (the same name, the same colour, in every run)."""
    if name in _BAND_COLOURS:
        return _BAND_COLOURS[name]
    return _COLOURS[zlib.crc32(name.encode()) % len(_COLOURS)] if name else "#999999"


_BAND_COLOURS = band_colours()
