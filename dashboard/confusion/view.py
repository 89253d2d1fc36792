"""The visible range of the matrix: what a zoom or pan asks for, kept inside the matrix."""

from __future__ import annotations

from typing import Any

Range = tuple[float, float]
MIN_SPAN = 2.0  # slots: zooming in further shows no more detail


def full(num_classes: int) -> tuple[Range, Range]:
    return (0.0, float(num_classes)), (0.0, float(num_classes))


def _axis_from_relayout(relayout: dict[str, Any], axis: str) -> Range | str | None:
    """(lo, hi) when the event sets this axis' range, "auto" for autorange, else None."""
    if relayout.get(f"{axis}.autorange"):
        return "auto"
    rng = relayout.get(f"{axis}.range")
    if isinstance(rng, list | tuple) and len(rng) == 2:
        lo, hi = rng
    else:
        lo, hi = relayout.get(f"{axis}.range[0]"), relayout.get(f"{axis}.range[1]")
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        return float(lo), float(hi)
    return None


def clamp(rng: Range, num_classes: int) -> Range:
    """Ordered, at least MIN_SPAN wide, moved (not shrunk) back inside [0, C]."""
    c = float(num_classes)
    lo, hi = sorted(rng)
    span = min(max(hi - lo, min(MIN_SPAN, c)), c)
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2, mid + span / 2
    if lo < 0:
        lo, hi = 0.0, span
    if hi > c:
        lo, hi = c - span, c
    return lo, hi


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
    fx, fy = full(num_classes)
    if not previous or previous.get("context") != context:
        return fx, fy
    x = tuple(previous.get("x", fx))
    y = tuple(previous.get("y", fy))
    if from_graph and relayout:
        for axis in ("xaxis", "yaxis"):
            got = _axis_from_relayout(relayout, axis)
            if got == "auto":
                if axis == "xaxis":
                    x = fx
                else:
                    y = fy
            elif got is not None:
                if axis == "xaxis":
                    x = got
                else:
                    y = got
    return clamp(x, num_classes), clamp(y, num_classes)  # type: ignore[arg-type]
