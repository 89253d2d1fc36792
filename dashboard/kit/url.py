"""A view's state in its URL: the query string a page writes as its state changes (so a copied
link reproduces the view), and the parsers its layout reads the query back with.

Written with ``history.replaceState`` (or ``pushState`` when a zoom or selection changed, so
the back button steps back through them); neither tells Dash's router, so writing the URL
never re-renders the page. Going back does: the page is laid out again from the older query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode


def first(value: Any) -> str | None:
    """A query value (Dash gives a list for a repeated key): the first, as text."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def integer(value: Any, low: int = 0, high: int = 10**9) -> int | None:
    """A whole number in [low, high] from the query, else None."""
    text = first(value)
    try:
        number = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def choice(value: Any, allowed: Sequence[str], default: str) -> str:
    """One of ``allowed`` from the query, else ``default``."""
    text = first(value)
    return text if text in allowed else default


def choices(value: Any, allowed: Sequence[str]) -> list[str]:
    """The items of a comma-separated query value that are in ``allowed``, in their order."""
    text = first(value) or ""
    given = set(text.split(","))
    return [a for a in allowed if a in given]


def pair(value: Any, low: int = 0, high: int = 10**9) -> tuple[int, int] | None:
    """``a,b`` (two whole numbers in [low, high]) from the query, else None."""
    parts = (first(value) or "").split(",")
    if len(parts) != 2:
        return None
    numbers = [integer(p, low, high) for p in parts]
    return None if None in numbers else (numbers[0], numbers[1])  # type: ignore[return-value]


def span(value: Any) -> tuple[float, float] | None:
    """``lo,hi`` (two finite numbers, lo < hi) from the query, else None."""
    parts = (first(value) or "").split(",")
    if len(parts) != 2:
        return None
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        return None
    return lo, hi


def show_span(rng: Sequence[float] | None) -> str | None:
    """A range as ``lo,hi`` with a few decimals (enough to draw the same pixels)."""
    if not rng or len(rng) != 2:
        return None
    return ",".join(f"{float(v):.6g}" for v in rng)


def query(params: Iterable[tuple[str, Any]]) -> str:
    """``?k=v&...`` of the params that are set (None, "" and [] left out); "" when none."""
    kept = []
    for key, value in params:
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        kept.append((key, str(value)))
    return "?" + urlencode(kept) if kept else ""


def register_writer(store: str, push: Sequence[str] = ()) -> None:
    """Write the query string in ``store`` (a dcc.Store's data) into the address bar: pushed
    as a new history entry when one of the ``push`` keys changed, else replaced."""
    from dash import Input, Output, clientside_callback

    keys = ",".join(f'"{k}"' for k in push)
    clientside_callback(
        f"""
        function(search) {{
            const nothing = window.dash_clientside.no_update;
            if (typeof search !== "string" || search === window.location.search) {{
                return nothing;
            }}
            const before = new URLSearchParams(window.location.search);
            const after = new URLSearchParams(search);
            const moved = [{keys}].some(k => before.get(k) !== after.get(k));
            const url = window.location.pathname + search + window.location.hash;
            if (moved && before.toString() !== "") {{
                window.history.pushState(null, "", url);
            }} else {{
                window.history.replaceState(null, "", url);
            }}
            return search;
        }}
        """,
        Output(store + "-written", "data"),
        Input(store, "data"),
    )
