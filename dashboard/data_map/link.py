"""The data map's state in its URL: ``?run=NAME&last=E&colour=C&x=LO,HI&y=LO,HI&image=I``, read
back checked, and the link of the map shown (defaults left out), as pure functions."""

from __future__ import annotations

from typing import Any

from dashboard.data_map.service import COLOUR_BY, X_EXTENT, Y_EXTENT
from dashboard.kit import url


def view_from_query(query: dict[str, Any]) -> dict[str, Any]:
    """The map a link names (each value checked; what is missing or wrong: the default)."""
    return {
        "run": url.first(query.get("run")),
        "last": url.integer(query.get("last"), 1),
        "colour": url.choice(query.get("colour"), COLOUR_BY, "band"),
        "x": url.span(query.get("x")),
        "y": url.span(query.get("y")),
        "image": url.integer(query.get("image")),
    }


def view_query(
    run: str | None, last: int | None, colour: str, view: dict | None, image: int | None
) -> str:
    """The link of the map shown: run, last epoch, colouring (unless band), the zoom when
    zoomed, the image whose history is open."""
    zoomed = view if view and view.get("context") == [run] else None
    return url.query(
        [
            ("run", run),
            ("last", last),
            ("colour", None if colour == "band" else colour),
            ("x", url.show_span(zoomed["x"]) if zoomed and zoomed["x"] != list(X_EXTENT) else None),
            ("y", url.show_span(zoomed["y"]) if zoomed and zoomed["y"] != list(Y_EXTENT) else None),
            ("image", image),
        ]
    )
