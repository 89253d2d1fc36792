"""The one rule a page's own run picker follows, for every page that has one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from epochscope.provider import Having


def choose_run(
    names: Sequence[str],
    selected: Sequence[str] | None,
    wanted: str | None,
    current: str | None,
    from_shell: bool,
) -> str | None:
    """The run a page shows out of ``names`` (the runs it can show, newest first).

    The current run stays while it is listed; a run picked in the shell's picker is shown
    here too (unless the current one is among the shell's); on first load the run the URL
    names (``wanted``), else the first chosen in the shell, else the newest.
    """
    chosen = list(selected or [])
    asked = [*chosen, wanted] if from_shell else [wanted, *chosen]
    preferred = [r for r in asked if r in names]
    value = current if current in names else (preferred or [*names, None])[0]
    if from_shell and preferred and current not in chosen:
        value = preferred[0]
    return value


def options(names: Sequence[str]) -> list[dict[str, str]]:
    """A dcc.Dropdown's options for run names."""
    return [{"label": n, "value": n} for n in names]


def register(dropdown: str, having: Having | None = None, wanted: str | None = None) -> None:
    """The page's run picker ``dropdown``: its options (the runs having ``having``, newest
    first) and value by :func:`choose_run`, again whenever the shell's picker changes;
    ``wanted``: the store holding the run a link names (``{"run": ...}``)."""
    from dash import Input, Output, State, callback, ctx

    from dashboard import runs
    from dashboard.shell import tolerant

    @callback(
        Output(dropdown, "options"),
        Output(dropdown, "value"),
        Input("shell-runs", "value"),
        *([Input(wanted, "data")] if wanted else []),
        State(dropdown, "value"),
    )
    @tolerant
    def run_choices(selected: list[str] | None, *rest: Any):
        asked, current = (rest[0] or {}).get("run") if wanted else None, rest[-1]
        names = runs.provider().names(having=having)
        value = choose_run(names, selected, asked, current, ctx.triggered_id == "shell-runs")
        return options(names), value
