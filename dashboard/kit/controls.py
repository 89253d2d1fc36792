"""Small controls every page lays out the same way."""

from __future__ import annotations

from collections.abc import Sequence

from dash import dcc


def radio(id_: str, options: Sequence[tuple[str, str]], value: str) -> dcc.RadioItems:
    """Inline radio buttons: ``options`` as (value, label)."""
    return dcc.RadioItems(
        id=id_,
        options=[{"label": label, "value": v} for v, label in options],
        value=value,
        inline=True,
        inputStyle={"marginRight": "0.25rem"},
        labelStyle={"marginRight": "0.8rem"},
    )
