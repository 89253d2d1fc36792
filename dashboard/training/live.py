"""What a training-page poll sends: whole figures, patches with only new points, or nothing.

The browser keeps, per run, the byte position of the last event it was sent (``state``); the
server reads each metrics.jsonl incrementally through the provider (``epochscope.Runs.log``).
A poll answers with
the events after the browser's position, so every tab and every gunicorn worker agree without
any shared memory: the position is a fact about the file, not about a process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from dash import Patch

from dashboard.training import figures
from epochscope import Runs
from epochscope.events import epoch_table, event_epoch, last_status
from epochscope.records import clean_number


@dataclass
class Update:
    """One poll's answer: per panel a Figure (full), a Patch (new points) or None (unchanged)."""

    panels: dict[str, go.Figure | Patch | None]
    progress: list[dict[str, Any]] | None  # None: unchanged
    state: dict[str, Any]
    full: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.progress is None and all(v is None for v in self.panels.values())


def _t0(provider: Runs, run: str, events: list[dict[str, Any]]) -> float:
    info = provider.info(run)
    started = info.started if info is not None else None
    if started:
        return float(started)
    times = [ev["time"] for ev in events[:1] if isinstance(ev.get("time"), int | float)]
    return float(times[0]) if times else 0.0


def _digest(progress: list[dict[str, Any]]) -> str:
    """A short fingerprint: the browser keeps this, not the whole progress, in its state."""
    text = json.dumps(progress, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _after(event: dict[str, Any], epoch: int) -> bool:
    e = event.get("epoch")
    return isinstance(e, int) and e > epoch


def _count(value: Any) -> int | None:
    number = clean_number(value)
    return int(number) if number is not None and number >= 0 else None


def progress_of(provider: Runs, run: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Current epoch, step, ETA and status of a run, as plain data for the page.

    The ETA is reckoned at the time of the last event (not now), so a poll with no new events
    has nothing new to say and sends nothing.
    """
    info = provider.info(run)
    total = (info.epochs or None) if info is not None else None
    table = epoch_table(events)
    done = max(table, default=0)
    state = provider.state(run, events)
    status = last_status(events) or {}
    step = next((ev for ev in reversed(events) if ev.get("kind") == "step"), None)
    eta = None
    if state == "running" and total:
        secs = [
            s for ev in list(table.values())[-3:] if (s := clean_number(ev.get("epoch_seconds")))
        ]
        if secs:
            per_epoch = sorted(secs)[len(secs) // 2]
            times = [clean_number(ev.get("time")) or 0.0 for ev in table.values()]
            epoch_end = max([*times, clean_number(status.get("time")) or 0.0])
            latest = (clean_number(events[-1].get("time")) if events else None) or epoch_end
            eta = max(0.0, per_epoch * (total - done) - (latest - epoch_end))
    last = table[done] if done else {}
    return {
        "run": run,
        "state": state,
        "epoch": done,
        "epochs": total,
        "step": _count(step.get("epoch_step")) if step and _after(step, done) else None,
        "steps_per_epoch": _count(step.get("steps_per_epoch")) if step else None,
        "eta_s": None if eta is None else round(eta),
        "val_top1": clean_number(last.get("val_top1")),
        "val_top5": clean_number(last.get("val_top5")),
        "error": str(status.get("error"))[:500] if state == "failed" else None,
    }


def _full(
    provider: Runs, runs: list[str]
) -> tuple[dict[str, go.Figure], dict[str, Any], list[dict[str, Any]]]:
    per_panel: dict[str, list[figures.Series]] = {p: [] for p in figures.PANELS}
    state: dict[str, Any] = {
        "runs": list(runs),
        "pos": {},
        "ino": {},
        "top": {},
        "best": {},
    }
    progress = []
    for i, run in enumerate(runs):
        log = provider.log(run)
        events = list(log.events)
        t0 = _t0(provider, run, events)
        for panel, series in figures.run_series(run, i, events, t0).items():
            per_panel[panel].extend(series)
        state["pos"][run] = log.position
        state["ino"][run] = log.inode
        table = epoch_table(events)
        state["top"][run] = max(table, default=0)
        best = figures.best_epoch(table)
        state["best"][run] = [best] if best is not None else []
        progress.append(progress_of(provider, run, events))
    state["keys"] = {p: figures.figure_keys(s) for p, s in per_panel.items()}
    state["empty"] = [p for p, s in per_panel.items() if not any(x.x for x in s)]
    state["progress"] = _digest(progress)
    figs = {p: figures.build_figure(p, s) for p, s in per_panel.items()}
    return figs, state, progress


def _run_panel(
    provider: Runs, run: str, index: int, position: int, panel: str
) -> list[figures.Series]:
    events = provider.log(run).upto(position)
    return figures.run_series(run, index, events, _t0(provider, run, events))[panel]


def poll(provider: Runs, selected: list[str], state: dict[str, Any] | None) -> Update:
    """Compare the browser's ``state`` with the provider's runs and say what to send."""
    runs, errors = [], []
    for name in selected or []:
        try:
            runs.append(provider.check(name))
        except (ValueError, LookupError) as e:
            errors.append(str(e))
    if not state or state.get("runs") != runs:
        figs, new_state, progress = _full(provider, runs)
        return Update(dict(figs), progress, new_state, full=True, errors=errors)

    new_by_run: dict[str, list[dict[str, Any]]] = {}
    ends: dict[str, int] = {}
    progress = []
    for run in runs:
        log = provider.log(run)
        new, ok, end = log.since(state["pos"].get(run, 0))
        redone = any(
            (ev.get("kind") == "epoch" and isinstance(ev.get("epoch"), int)
             and ev["epoch"] <= state["top"].get(run, 0))
            or (ev.get("kind") == "status" and ev.get("state") == "resumed")
            for ev in new
        )  # fmt: skip
        if not ok or log.inode != state["ino"].get(run) or redone:
            # truncated, replaced or resumed: the drawn curves are no longer a prefix
            figs, new_state, progress = _full(provider, runs)
            return Update(dict(figs), progress, new_state, full=True, errors=errors)
        new_by_run[run] = new
        ends[run] = end
        progress.append(progress_of(provider, run, list(log.events)))

    state = {
        **state,
        "pos": dict(state["pos"]),
        "top": dict(state["top"]),
        "best": dict(state.get("best", {})),
    }
    keys = {p: list(k) for p, k in state["keys"].items()}
    panels: dict[str, go.Figure | Patch | None] = {p: None for p in figures.PANELS}
    grown: dict[str, list[figures.Series]] = {p: [] for p in figures.PANELS}
    for i, run in enumerate(runs):
        new = new_by_run[run]
        if not new:
            continue
        all_events = provider.log(run).upto(ends[run])
        series = figures.run_series(run, i, new, _t0(provider, run, all_events), all_events)
        best = state.setdefault("best", {})
        for panel, s in series.items():
            for one in s:
                if one.replace:  # the best-epoch star: send it only when it moved
                    if one.x == best.get(run):
                        continue
                    best[run] = one.x
                grown[panel].append(one)
        state["pos"][run] = ends[run]
        # the same epoch rule as the first poll's epoch_table (no bools, no negatives)
        new_epochs = [e for ev in new if ev.get("kind") == "epoch" and (e := event_epoch(ev))]
        state["top"][run] = max([state["top"].get(run, 0), *new_epochs])
    empty = list(state.get("empty", []))
    for panel, series in grown.items():
        if panel in empty and any(x.x for x in series):
            # its first points: draw it whole once, which also drops the "no data yet" note
            whole = [
                x
                for i, run in enumerate(runs)
                for x in _run_panel(provider, run, i, state["pos"].get(run, 0), panel)
            ]
            panels[panel], keys[panel] = figures.build_figure(panel, whole), [x.key for x in whole]
            empty.remove(panel)
        elif series:
            panels[panel], keys[panel] = figures.patch_figure(panel, keys[panel], series)
    state["keys"] = keys
    state["empty"] = empty
    digest = _digest(progress)
    changed_progress = progress if digest != state.get("progress") else None
    state["progress"] = digest
    return Update(dict(panels), changed_progress, state, errors=errors)
