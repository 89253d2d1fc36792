"""Band colours: a band keeps its colour across runs and orders."""

from __future__ import annotations

import zlib

from epochscope.catalogue import Catalogue, load_catalogue

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
