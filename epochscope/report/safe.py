"""What keeps a report safe to send: run text escaped for HTML, JSON that cannot close its
``<script>`` tag, and file names without the machine's folders."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import PurePath
from typing import Any

#: characters that could end a <script> element or open markup, as JSON escapes
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "'": "\\u0027",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_ESCAPE = re.compile(r"\\.")


def _quote(m: re.Match[str]) -> str:
    return "\\u0022" if m.group(0) == '\\"' else m.group(0)


def esc(value: Any) -> str:
    """Any value as HTML text: ``<``, ``>``, ``&`` and both quotes escaped."""
    return html.escape(str(value), quote=True)


def _clean(tree: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    if isinstance(tree, dict):
        return {str(k): _clean(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_clean(v) for v in tree]
    return tree


def script_json(value: Any) -> str:
    """``value`` as JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` appear literally, so
    no string from the run can close the tag or open a comment."""
    text = json.dumps(_clean(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # a quote inside a string as \u0022, so the run's text never holds a bare `"` either
    text = _STRING.sub(lambda m: _ESCAPE.sub(_quote, m.group(0)[1:-1]).join('""'), text)
    for char, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def basename(path: str | None) -> str:
    """The last part of a path (a data root shown without the machine's folders)."""
    if not path:
        return ""
    return PurePath(str(path).rstrip("/\\")).name or ""


def number(value: Any, digits: int = 4) -> str:
    """A number for a table cell ("" for missing or not finite)."""
    if value is None or isinstance(value, bool):
        return esc(value) if isinstance(value, bool) else ""
    if isinstance(value, int):
        return str(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return esc(value)
    return f"{f:.{digits}g}" if math.isfinite(f) else ""


def percent(value: Any, digits: int = 1) -> str:
    """A fraction in 0..1 as ``12.3%`` ("" for missing or not finite)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{100 * f:.{digits}f}%" if math.isfinite(f) else ""


#: an absolute path (POSIX, ~, or a Windows drive) inside a text: its folders are dropped
_ABSOLUTE = re.compile(
    r"(?:(?<![\w.])~|(?<![\w.:])[A-Za-z]:|(?<![\w.~]))[\\/](?:[^\s\\/'\"<>,;]+[\\/])*"
)


def without_folders(text: str) -> str:
    """``text`` with each absolute path shortened to ``…/<last part>``, so that values such as
    a hyper-parameter ``data=/home/me/imagenet`` do not tell where things are on the machine."""
    return _ABSOLUTE.sub("…/", text)
