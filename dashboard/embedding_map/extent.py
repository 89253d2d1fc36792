"""The embedding map's coordinates: the layout's [-1, 1] on both axes (y up), with a margin.
The drawing is the kit's (dashboard/kit/points.py)."""

from __future__ import annotations

from dashboard.kit import zoom

Range = zoom.Range
EXTENT: Range = (-1.05, 1.05)  # the whole map, with a margin around the layout's [-1, 1]
MIN_SPAN = 1e-3  # zooming further shows no more than single points


def clamp(rng: Range) -> Range:
    """Ordered, at least MIN_SPAN wide, moved back inside :data:`EXTENT` (and no larger)."""
    return zoom.clamp(rng, EXTENT, MIN_SPAN)
