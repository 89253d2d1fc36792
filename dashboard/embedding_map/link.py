"""The map's state in its URL: what a link names (read back checked) and the link of the map
shown, as pure functions of the page's values."""

from __future__ import annotations

from typing import Any

from dashboard.embedding_map.extent import EXTENT
from dashboard.embedding_map.service import COLOUR_BY
from dashboard.kit import url


def view_from_query(query: dict[str, Any]) -> dict[str, Any]:
    """The map a link names (each value checked; what is missing or wrong: the default)."""
    return {
        "run": url.first(query.get("run")),
        "epoch": url.integer(query.get("epoch"), 1),
        "colour": url.choice(query.get("colour"), COLOUR_BY, "band"),
        "x": url.span(query.get("x")),
        "y": url.span(query.get("y")),
    }


def view_query(run: str | None, epoch: int | None, colour: str, view: dict | None) -> str:
    """The link of the map shown: run, epoch, colouring (unless band), the zoom when zoomed."""
    zoomed = view if view and view.get("context") == [run] else None
    whole = list(EXTENT)
    return url.query(
        [
            ("run", run),
            ("epoch", epoch),
            ("colour", None if colour == "band" else colour),
            ("x", url.show_span(zoomed["x"]) if zoomed and zoomed["x"] != whole else None),
            ("y", url.show_span(zoomed["y"]) if zoomed and zoomed["y"] != whole else None),
        ]
    )
