"""The visible range of the matrix: what a zoom or pan asks for, kept inside the matrix (the
kit's zoomable view, in display slots: class at slot s covers [s, s + 1))."""

from __future__ import annotations

from typing import Any

from dashboard.kit import zoom
from dashboard.kit.zoom import Range

MIN_SPAN = 2.0  # slots: zooming in further shows no more detail


def full(num_classes: int) -> tuple[Range, Range]:
    return (0.0, float(num_classes)), (0.0, float(num_classes))


def clamp(rng: Range, num_classes: int) -> Range:
    """Ordered, at least MIN_SPAN wide, moved (not shrunk) back inside [0, C]."""
    return zoom.clamp(rng, (0.0, float(num_classes)), MIN_SPAN)


def next_view(
    relayout: dict[str, Any] | None,
    previous: dict[str, Any] | None,
    num_classes: int,
    context: list[Any],
    from_graph: bool,
) -> tuple[Range, Range]:
    """The ranges to render.

    ``context`` names what the slots mean (run, order, class count): when it differs from the
    previous view's, slots name other classes and the view starts over. A relayout event from
    the graph moves the axes it names; any other trigger (epoch, mode, scale) keeps the view.
    """
    return zoom.next_ranges(
        relayout if from_graph else None,
        previous,
        context,
        full(num_classes),
        lambda r: clamp(r, num_classes),
    )
