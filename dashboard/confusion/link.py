"""The confusion explorer's state in its URL: what a link names (read back checked) and the
link of what the page shows (defaults left out), as pure functions of the page's values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboard.kit import url
from dashboard.kit.zoom import Range

from .view import clamp

MODES = ("top5", "top1")
ORDERS = ("wordnet", "index", "cluster")
SCALES_SHOWN = ("eq_hist", "log", "linear")
OPTIONS = ("hide_diagonal", "row")


def view_from_query(query: dict[str, Any]) -> dict[str, Any]:
    """The view a link names (each value checked; what is missing or wrong: the default)."""
    return {
        "run": url.first(query.get("run")),
        "epoch": url.integer(query.get("epoch"), 1),
        "compare": url.first(query.get("compare")),
        "compare_epoch": url.integer(query.get("compare_epoch"), 1),
        "mode": url.choice(query.get("mode"), MODES, "top5"),
        "order": url.choice(query.get("order"), ORDERS, "wordnet"),
        "scale": url.choice(query.get("scale"), SCALES_SHOWN, "eq_hist"),
        "options": url.choices(query.get("opt"), OPTIONS),
        "x": url.span(query.get("x")),
        "y": url.span(query.get("y")),
        "cls": url.integer(query.get("cls")),
        "cell": url.pair(query.get("cell")),
    }


def linked_zoom(
    wanted: dict | None, run: str, num_classes: int, default: tuple[Range, Range]
) -> tuple[Range, Range]:
    """The ranges a link names for ``run`` (kept inside its matrix), else ``default``."""
    wanted = wanted or {}
    if wanted.get("run") not in (run, None):
        return default
    x, y = wanted.get("x"), wanted.get("y")
    return (
        clamp(tuple(x), num_classes) if x else default[0],
        clamp(tuple(y), num_classes) if y else default[1],
    )


def linked_drill(
    cell: Sequence[int] | None, selected: int | None, num_classes: int
) -> tuple[int, int] | int | None:
    """What an opened link drills into: its cell (true, predicted) when inside the matrix, else
    its selected class, else nothing. A cell clicked after a class was chosen is the later,
    narrower choice, so it wins."""
    inside = range(num_classes)
    if cell and len(cell) == 2 and cell[0] in inside and cell[1] in inside:
        return int(cell[0]), int(cell[1])
    return int(selected) if selected in inside else None


def view_query(
    run: str | None,
    epoch: int | None,
    mode: str,
    kind: str,
    scale: str,
    options: list[str] | None,
    compare: str | None,
    compare_epoch: int | None,
    view: dict | None,
    selected: int | None,
    cell: Sequence[int] | None = None,
) -> str:
    """The link of what the page shows: the defaults left out, the zoom while zoomed in."""
    zoomed = view if view and view.get("context", [None])[0] == run else None
    whole = zoomed and [0, zoomed["context"][2]]
    return url.query(
        [
            ("run", run),
            ("epoch", epoch),
            ("mode", None if mode == "top5" else mode),
            ("order", None if kind == "wordnet" else kind),
            ("scale", None if scale == "eq_hist" else scale),
            ("opt", list(options or [])),
            ("compare", compare),
            ("compare_epoch", compare_epoch if compare else None),
            ("x", url.show_span(zoomed["x"]) if zoomed and zoomed["x"] != whole else None),
            ("y", url.show_span(zoomed["y"]) if zoomed and zoomed["y"] != whole else None),
            ("cls", selected),
            ("cell", list(cell) if cell else None),
        ]
    )
