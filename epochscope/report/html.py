"""Small HTML builders shared by the sections (every value escaped here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from epochscope.report.colours import band_colour, hex_colour
from epochscope.report.safe import esc, script_json


@dataclass
class Section:
    """One part of the report: its anchor, title, body (HTML) and the JSON blocks it reads."""

    id: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)


def json_block(block_id: str, value: Any) -> str:
    """A ``<script type="application/json">`` the page's script reads (safe: see safe.py)."""
    return f'<script type="application/json" id="{esc(block_id)}">{script_json(value)}</script>'


def kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of names and values (both escaped)."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def table(
    table_id: str,
    heads: list[tuple[str, bool]],
    rows: Iterable[list[tuple[str, Any]]],
    sortable: bool = True,
) -> str:
    """A table: ``heads`` (title, numeric), each row a list of (shown HTML, sort value or
    None). The shown HTML must already be escaped; sort values are escaped here."""
    th = "".join(f'<th class="num">{esc(h)}</th>' if num else f"<th>{esc(h)}</th>"
                 for h, num in heads)  # fmt: skip
    trs = []
    for row in rows:
        tds = []
        for (shown, value), (_, num) in zip(row, heads, strict=True):
            attr = f' data-v="{esc(value)}"' if value is not None else ""
            cls = ' class="num"' if num else ""
            tds.append(f"<td{cls}{attr}>{shown}</td>")
        trs.append("<tr>" + "".join(tds) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    return (
        f'<table id="{esc(table_id)}"{cls}><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(trs)}</tbody></table>"
    )


def band_legend(bands: Iterable[str]) -> str:
    """A colour key of band names (escaped)."""
    spans = []
    for b in sorted(set(bands)):
        colour = hex_colour(band_colour(b))
        spans.append(f'<span><i style="background:{colour}"></i>{esc(b or "other")}</span>')
    return '<div class="legend">' + "".join(spans) + "</div>"
