"""Pure helpers of the page shell: which runs a URL asks for, picker options, nav links."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from dash.exceptions import PreventUpdate

from dashboard import config
from epochscope import check_run_name
from epochscope.records import RunSummary

log = logging.getLogger(__name__)

NAV = (
    ("Training", "/"),
    ("Classify a photo", "/classify"),
    ("Confusion", "/confusion"),
    ("Classes", "/classes"),
    ("Labels", "/labels"),
    ("Map", "/map"),
    ("Data map", "/data-map"),
)


def _valid_name(name: str) -> bool:
    try:
        check_run_name(name)
    except ValueError:
        return False
    return True


def runs_from_search(search: str | None) -> list[str]:
    """``?run=A&run=B`` -> ["A", "B"] (valid names only, first occurrence kept)."""
    names = parse_qs((search or "").lstrip("?")).get("run", [])
    out: list[str] = []
    for name in names:
        if _valid_name(name) and name not in out:
            out.append(name)
    return out[: config.max_selected_runs()]


def selection(runs: Any) -> tuple[list[str], str | None]:
    """A page's chosen runs as the server uses them: names only, each once, at most
    EPOCHSCOPE_MAX_RUNS (a client asking for 10,000 runs gets the first few and a note)."""
    names = (
        list(dict.fromkeys(r for r in runs if isinstance(r, str))) if isinstance(runs, list) else []
    )
    cap = config.max_selected_runs()
    if len(names) <= cap:
        return names, None
    return names[:cap], f"showing the first {cap} of {len(names)} runs chosen (EPOCHSCOPE_MAX_RUNS)"


def default_runs(summaries: Sequence[RunSummary]) -> list[str]:
    """With no ?run=: the running runs, else the newest run."""
    running = [s.name for s in summaries if s.state == "running"]
    return running or [s.name for s in summaries[:1]]


def picker_options(
    summaries: Sequence[RunSummary], searches: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """Options of the run picker; ``searches`` (run -> ``lr=0.1 arch=...``) lets a typed
    query match hyper-parameters as well as the label."""
    return [dict(o) for o in _options(*_key(summaries, searches))[0]]


def picker_signature(
    summaries: Sequence[RunSummary], searches: Mapping[str, str] | None = None
) -> str:
    """A short digest of the picker's options: what a tab's poll compares (not the options)."""
    return _options(*_key(summaries, searches))[1]


def _key(
    summaries: Sequence[RunSummary], searches: Mapping[str, str] | None
) -> tuple[tuple[RunSummary, ...], tuple[str, ...] | None]:
    words = None if searches is None else tuple(searches.get(s.name, "") for s in summaries)
    return tuple(summaries), words


@functools.lru_cache(maxsize=8)
def _options(
    summaries: tuple[RunSummary, ...], searches: tuple[str, ...] | None
) -> tuple[tuple[dict[str, str], ...], str]:
    # cached: 1,000 unchanged summaries make the same options on every poll of every tab
    options = []
    for n, s in enumerate(summaries):
        label = f"{s.label()} · started {_when(s.started)}"
        option = {"label": label, "value": s.name}
        if searches is not None:
            option["search"] = f"{label} {searches[n]}".strip()
        options.append(option)
    digest = hashlib.sha1(repr(options).encode(), usedforsecurity=False).hexdigest()
    return tuple(options), digest


def _when(started: float | None) -> str:
    try:
        return datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M") if started else "?"
    except (OverflowError, ValueError, OSError):  # a damaged run.json's 400-digit "started"
        return "?"


def nav_href(path: str, runs: Sequence[str] | None) -> str:
    """A nav link that keeps the chosen runs: /classify?run=A&run=B."""
    return f"{path}?{urlencode([('run', r) for r in runs])}" if runs else path


def tolerant(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Dash callback that reads run files: a file caught mid-replacement, deleted or
    damaged (or a malformed request) keeps what the page shows instead of answering 500.

    The expected failures of a damaged run (ValueError, LookupError, OSError, TypeError) log
    one line; anything else, whatever a run directory did to a reader, logs its traceback and
    still answers 204: one bad run never breaks the page for the others."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PreventUpdate:
            raise
        except (ValueError, LookupError, OSError, TypeError) as e:
            log.warning("%s: %s: %s; the page keeps its last view", fn.__name__,
                        type(e).__name__, str(e)[:300])  # fmt: skip
            raise PreventUpdate from None
        except Exception:
            log.exception("%s failed; the page keeps its last view", fn.__name__)
            raise PreventUpdate from None

    return wrapper
