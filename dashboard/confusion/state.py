"""What the confusion explorer's callbacks decide, as pure functions of their inputs (no Run,
no Dash context): the ranges to render, the view kept for the next event and the line under the
matrix, what a drill-down lists, the compared epoch. The callbacks in page.py read the Run and
the trigger and route them here; tests reach every rule without a browser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dashboard.kit.zoom import Range

from .link import linked_drill, linked_zoom
from .view import next_view


def matrix_ranges(
    relayout: dict[str, Any] | None,
    previous: dict[str, Any] | None,
    context: list[Any],
    from_graph: bool,
    wanted: dict[str, Any] | None,
    found: dict[str, Any] | None,
) -> tuple[Range, Range]:
    """The ranges to render. ``context`` is ``[run, order, class count]``: a graph event moves
    the axes it names within the previous view of the same context (next_view); the first view
    shows the zoom a link names (``wanted``); a class the search found (``found``: its run and
    zoom, given when it asked) is shown whatever else changed with it."""
    run, _order, num_classes = context
    x, y = next_view(relayout, previous, num_classes, context, from_graph)
    if previous is None:
        x, y = linked_zoom(wanted, run, num_classes, (x, y))
    if found and found.get("run") == run:
        x, y = tuple(found["x"]), tuple(found["y"])
    return x, y


def stored_view(
    context: list[Any],
    x: Range,
    y: Range,
    grid: dict[str, float],
    epoch: int,
    compare: tuple[str, int] | None,
    size: tuple[int, int],
    hide_diagonal: bool,
) -> dict[str, Any]:
    """The drawn view as the page keeps it (``confusion-view``): what the next zoom starts from,
    the hover grid that names a cell under the pointer, the epoch and compared run (name,
    epoch) a drill-down or an export uses, and the link's zoom."""
    return {
        "context": list(context),
        "x": list(x),
        "y": list(y),
        "grid": grid,
        "epoch": epoch,
        "compare": list(compare) if compare else None,
        "size": list(size),
        "hide_diagonal": hide_diagonal,
    }


def matrix_info(x: Range, y: Range, image_bytes: int, seconds: float) -> str:
    """The line under the matrix: the slots shown, the image's size and render time, the
    gestures."""
    return (
        f"Showing slots {x[0]:.0f}-{x[1]:.0f} (predicted) x {y[0]:.0f}-{y[1]:.0f} (true) · "
        f"image {image_bytes / 1024:.0f} KB, rendered in {seconds * 1000:.0f} ms · "
        "drag to zoom, double-click for the whole matrix"
    )


def active_row(active: dict[str, Any] | None, rows: list[dict] | None) -> dict | None:
    """The table row of a DataTable's active cell among the rows shown, if it is one."""
    if not active or not rows or not 0 <= active.get("row", -1) < len(rows):
        return None
    return rows[active["row"]]


def drill_trigger(changed: Any, click: dict | None, active: dict | None) -> str:
    """What asked for a drill-down. A new view counts only when nothing else did (the pairs
    table's cleared active cell and the first view arrive together when a link is opened)."""
    changed = set(changed or ())
    if "confusion-selected.data" in changed:
        return "confusion-selected"
    if "confusion-pairs.active_cell" in changed and active:
        return "confusion-pairs"
    if "confusion-graph.clickData" in changed and click:
        return "confusion-graph"
    if "confusion-view.data" in changed:
        return "confusion-view"
    return "confusion-pairs" if "confusion-pairs.active_cell" in changed else "confusion-graph"


@dataclass(frozen=True)
class Drill:
    """What the drill-down lists: one cell's images (``cell``: true, predicted class) or one
    class's (``cls``). ``from_link``: drilled into for an opened link, whose kept cell stays as
    it is; otherwise the kept cell becomes this one (``stored``; None for a class: cleared)."""

    cell: tuple[int, int] | None = None
    cls: int | None = None
    from_link: bool = False

    @property
    def stored(self) -> list[int] | None:
        return list(self.cell) if self.cell else None


def drill_target(
    trigger: str,
    num_classes: int,
    drilled: bool,
    cell: Sequence[int] | None,
    selected: int | None,
    pair: dict | None,
    clicked: tuple[int, int] | None,
) -> Drill | None:
    """What ``trigger`` (drill_trigger) drills into, or None for nothing new.

    A new view drills only into a link's cell or class, and only while nothing is drilled yet
    (``drilled``); a selected class into that class; the pairs table into its row (``pair``);
    a click into the cell under it (``clicked``, found by the caller)."""
    if trigger == "confusion-view":
        target = None if drilled else linked_drill(cell, selected, num_classes)
        if isinstance(target, tuple):
            return Drill(cell=target, from_link=True)
        return None if target is None else Drill(cls=target, from_link=True)
    if trigger == "confusion-selected":
        if selected is None or not 0 <= int(selected) < num_classes:
            return None
        return Drill(cls=int(selected))
    if trigger == "confusion-pairs":
        return Drill(cell=(int(pair["true_index"]), int(pair["pred_index"]))) if pair else None
    return Drill(cell=clicked) if clicked else None


def compare_epoch(
    epochs: Sequence[int],
    compare: str,
    run: str | None,
    epoch: int | None,
    current: int | None,
    wanted: dict[str, Any] | None,
    compare_changed: bool,
) -> int | None:
    """The epoch of the compared run ``compare`` (its ``epochs``): the one shown while it has
    it (unless the compared run was just chosen), a link's, else against the previous epoch
    for the same run, or the same epoch of another run (its last when it has not that one)."""
    if not epochs:
        return None
    wanted = wanted or {}
    if current in epochs and not compare_changed:
        return current
    if wanted.get("compare_epoch") in epochs and wanted.get("compare") == compare:
        return wanted["compare_epoch"]
    if compare == run and epoch is not None:
        earlier = [e for e in epochs if e < epoch]
        return (earlier or list(epochs))[-1]
    return epoch if epoch in epochs else epochs[-1]
