"""Pure helpers of the page shell: which runs a URL asks for, picker options, nav links."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from dash.exceptions import PreventUpdate

from epochscope.layout import RUN_NAME_RE
from epochscope.reader import RunSummary

log = logging.getLogger(__name__)

NAV = (
    ("Training", "/"),
    ("Classify a photo", "/classify"),
    ("Confusion", "/confusion"),
    ("Classes", "/classes"),
)


def runs_from_search(search: str | None) -> list[str]:
    """``?run=A&run=B`` -> ["A", "B"] (valid names only, first occurrence kept)."""
    names = parse_qs((search or "").lstrip("?")).get("run", [])
    out: list[str] = []
    for name in names:
        if RUN_NAME_RE.fullmatch(name) and name not in out:
            out.append(name)
    return out


def default_runs(summaries: Sequence[RunSummary]) -> list[str]:
    """With no ?run=: the running runs, else the newest run."""
    running = [s.name for s in summaries if s.state == "running"]
    return running or [s.name for s in summaries[:1]]


def picker_options(
    summaries: Sequence[RunSummary], searches: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """Options of the run picker; ``searches`` (run -> ``lr=0.1 arch=...``) lets a typed
    query match hyper-parameters as well as the label."""
    options = []
    for s in summaries:
        started = datetime.fromtimestamp(s.started).strftime("%Y-%m-%d %H:%M") if s.started else "?"
        label = f"{s.label()} · started {started}"
        option = {"label": label, "value": s.name}
        if searches is not None:
            option["search"] = f"{label} {searches.get(s.name, '')}".strip()
        options.append(option)
    return options


def nav_href(path: str, runs: Sequence[str] | None) -> str:
    """A nav link that keeps the chosen runs: /classify?run=A&run=B."""
    return f"{path}?{urlencode([('run', r) for r in runs])}" if runs else path


def tolerant(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Dash callback that reads run files: a file caught mid-replacement, deleted or
    damaged (or a malformed request) keeps what the page shows instead of answering 500."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, LookupError, OSError, TypeError) as e:
            log.warning("%s: %s: %s; the page keeps its last view", fn.__name__,
                        type(e).__name__, e)  # fmt: skip
            raise PreventUpdate from None

    return wrapper
