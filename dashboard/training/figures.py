"""Training figures as pure functions of metrics events (no Dash callbacks, no file access).

Each panel is a set of named series (``Series``). A full figure is drawn from all of a run's
events; a live update turns only the new events into series and then into a ``dash.Patch``
that extends the browser's trace arrays, so the figure is never sent twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from dash import Patch
from plotly.subplots import make_subplots

from epochscope.events import best_epoch, epoch_table
from epochscope.records import clean_number

__all__ = ["best_epoch", "build_figure", "patch_figure", "run_series"]

PANELS = ("accuracy", "loss", "lr", "throughput", "steps", "devices")
COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
)  # fmt: skip
TITLES = {
    "accuracy": "Accuracy per epoch (dashed: train, solid: validation, ★ best val top-5)",
    "loss": "Loss per epoch",
    "lr": "Learning rate",
    "throughput": "Throughput (images per second)",
    "steps": "Training loss per step",
    "devices": "Devices: memory and utilisation",
}


@dataclass
class Series:
    """One trace: ``key`` is stable across updates so a patch finds the trace again."""

    key: str
    name: str
    x: list[Any] = field(default_factory=list)
    y: list[Any] = field(default_factory=list)
    style: dict[str, Any] = field(default_factory=dict)
    col: int = 1  # subplot column (accuracy: 1 top-1, 2 top-5; devices: 1 memory, 2 util)
    replace: bool = False  # redrawn whole on every update (small: a best-epoch marker)

    def trace(self) -> go.Scatter:
        return go.Scatter(x=list(self.x), y=list(self.y), name=self.name, meta=self.key,
                          **self.style)  # fmt: skip


def run_color(run_index: int) -> str:
    return COLORS[run_index % len(COLORS)]


def _points(rows: Iterable[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    xs, ys = [], []
    for x, y in rows:
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


# --- series from events ------------------------------------------------------------------------
def epoch_series(
    run: str, color: str, epochs: Sequence[dict[str, Any]], panel: str
) -> list[Series]:
    """Per-epoch series of one panel from epoch events (ascending, one per epoch)."""
    split_style = {"train": {"dash": "dash"}, "val": {"dash": "solid"}}
    lines: list[tuple[str, str, str, int]] = []  # key suffix, label, event key, column
    if panel == "accuracy":
        lines = [
            ("train_top1", "train top-1", "train_top1", 1),
            ("val_top1", "val top-1", "val_top1", 1),
            ("train_top5", "train top-5", "train_top5", 2),
            ("val_top5", "val top-5", "val_top5", 2),
        ]
    elif panel == "loss":
        lines = [("train_loss", "train", "train_loss", 1), ("val_loss", "val", "val_loss", 1)]
    elif panel == "throughput":
        lines = [
            ("img_per_s", "train", "img_per_s", 1),
            ("val_img_per_s", "val", "val_img_per_s", 1),
        ]
    elif panel == "lr":
        lines = [("lr_epoch", "lr at epoch end", "lr", 1)]
    out = []
    for suffix, label, key, col in lines:
        xs, ys = _points((ev.get("epoch"), clean_number(ev.get(key))) for ev in epochs)
        split = "train" if suffix.startswith("train") or suffix == "img_per_s" else "val"
        mode = "markers" if panel == "lr" else "lines+markers"
        style = {
            "mode": mode,
            "line": {"color": color, **(split_style[split] if panel != "lr" else {})},
            "marker": {"size": 6, "color": color},
            "legendgroup": run,
        }
        out.append(Series(f"{run}/{suffix}", f"{run} {label}", xs, ys, style, col))
    return out


def best_marker(run: str, color: str, table: dict[int, dict[str, Any]]) -> Series:
    """A star on the best validation top-5 epoch (recomputed from all epochs, sent whole)."""
    best = best_epoch(table)
    xs, ys = ([best], [table[best]["val_top5"]]) if best is not None else ([], [])
    style = {
        "mode": "markers+text",
        "marker": {"symbol": "star", "size": 16, "color": color, "line": {"width": 1}},
        "text": [f"best: epoch {best}"] if best is not None else [],
        "textposition": "bottom center",
        "legendgroup": run,
        "showlegend": False,
    }
    return Series(f"{run}/best", f"{run} best epoch", xs, ys, style, col=2, replace=True)


def fractional_epoch(ev: dict[str, Any]) -> float | None:
    """Where a step event lies on the epoch axis: epoch 3, step 50 of 100 -> 2.5."""
    e, k, n = (
        ev.get("epoch"),
        clean_number(ev.get("epoch_step")),
        clean_number(ev.get("steps_per_epoch")),
    )
    if not isinstance(e, int) or k is None or not n:
        return None
    return round(e - 1 + k / n, 6)


def step_series(run: str, color: str, steps: Sequence[dict[str, Any]]) -> dict[str, list[Series]]:
    """Step-level loss (panel 'steps') and learning rate (panel 'lr')."""
    loss = _points((fractional_epoch(ev), clean_number(ev.get("loss"))) for ev in steps)
    lr = _points((fractional_epoch(ev), clean_number(ev.get("lr"))) for ev in steps)
    line = {"mode": "lines", "line": {"color": color, "width": 1}, "legendgroup": run}
    return {
        "steps": [Series(f"{run}/step_loss", f"{run} loss", *loss, line)],
        "lr": [Series(f"{run}/lr_step", f"{run} lr", *lr, line)],
    }


def device_series(
    run: str, color: str, devices: Sequence[dict[str, Any]], t0: float
) -> list[Series]:
    """Memory (MiB) and utilisation (%) per device over minutes since the run started."""
    by_device: dict[int, list[dict[str, Any]]] = {}
    for ev in devices:
        if isinstance(ev.get("index"), int) and clean_number(ev.get("time")) is not None:
            by_device.setdefault(ev["index"], []).append(ev)
    out = []
    for index, evs in sorted(by_device.items()):
        kind = evs[-1].get("device_kind", "device")
        label = f"{run} {kind}:{index}"
        dash = ("solid", "dot", "dash", "dashdot", "longdash")[index % 5]
        style = {"mode": "lines", "line": {"color": color, "dash": dash}, "legendgroup": run}
        minutes = [round((ev["time"] - t0) / 60.0, 4) for ev in evs]
        mem = [clean_number(ev.get("mem_used_mib")) for ev in evs]
        util = [clean_number(ev.get("util_pct")) for ev in evs]
        for what, values, col in (("mem", mem, 1), ("util", util, 2)):
            xs, ys = _points(zip(minutes, values, strict=True))
            name = f"{label} {'memory' if what == 'mem' else 'util'}"
            out.append(Series(f"{run}/dev{index}/{what}", name, xs, ys, dict(style), col))
    return out


def _step_key(ev: dict[str, Any]) -> Any:
    """The step number that a redone step replaces; a damaged one (a list, a dict) is its own."""
    step = ev.get("step")
    return step if step is None or isinstance(step, int | float | str) else id(ev)


def run_series(
    run: str,
    run_index: int,
    events: Sequence[dict[str, Any]],
    t0: float,
    all_events: Sequence[dict[str, Any]] | None = None,
) -> dict[str, list[Series]]:
    """Every panel's series for one run from ``events``.

    For a full figure ``events`` are all events; for a live update they are the new ones and
    ``all_events`` are all events (to place the best-epoch marker).
    """
    color = run_color(run_index)
    full = all_events is None
    epochs = list(epoch_table(events).values()) if full else [
        ev for ev in events if ev.get("kind") == "epoch" and isinstance(ev.get("epoch"), int)
    ]  # fmt: skip
    steps = [ev for ev in events if ev.get("kind") == "step"]
    if full:  # after a resume the redone steps replace the old ones
        steps = list({_step_key(ev): ev for ev in steps}.values())
    devices = [ev for ev in events if ev.get("kind") == "device"]
    step = step_series(run, color, steps)
    out = {
        "accuracy": epoch_series(run, color, epochs, "accuracy"),
        "loss": epoch_series(run, color, epochs, "loss"),
        "lr": step["lr"] + epoch_series(run, color, epochs, "lr"),
        "throughput": epoch_series(run, color, epochs, "throughput"),
        "steps": step["steps"],
        "devices": device_series(run, color, devices, t0),
    }
    table = epoch_table(events if full else all_events)
    out["accuracy"].append(best_marker(run, color, table))
    return out


# --- figures and patches -----------------------------------------------------------------------
def _layout(panel: str) -> dict[str, Any]:
    axes = {
        "accuracy": ("epoch", "accuracy"),
        "loss": ("epoch", "loss"),
        "lr": ("epoch", "learning rate"),
        "throughput": ("epoch", "images / s"),
        "steps": ("epoch", "loss"),
        "devices": ("minutes since start", "MiB used"),
    }[panel]
    return {
        "title": {"text": TITLES[panel], "font": {"size": 14}},
        "margin": {"l": 55, "r": 15, "t": 45, "b": 40},
        "height": 320,
        "template": "plotly_white",
        "legend": {"font": {"size": 10}},
        "uirevision": panel,  # keep the user's zoom while traces grow
        "xaxis": {"title": {"text": axes[0]}},
        "yaxis": {"title": {"text": axes[1]}},
    }


EPOCH_PANELS = ("accuracy", "loss", "lr", "throughput", "steps")


def epoch_ticks(series: Sequence[Series]) -> dict[str, Any]:
    """Whole-epoch ticks (1, 2, 3 ... or every k-th for long runs), never 1.2, 1.4, ..."""
    # a damaged log's 400-digit or infinite epoch must not break the other runs' figure
    usable = (x for s in series for x in s.x if isinstance(x, int | float) and -1e9 < x < 1e9)
    last = max(usable, default=1)
    return {"tick0": 1, "dtick": max(1, math.ceil(last / 12))}


def build_figure(panel: str, series: Sequence[Series]) -> go.Figure:
    """The whole figure of one panel."""
    if panel in ("accuracy", "devices"):
        titles = ("top-1", "top-5") if panel == "accuracy" else ("memory (MiB)", "utilisation (%)")
        fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.08)
        for s in series:
            fig.add_trace(s.trace(), row=1, col=s.col)
        fig.update_layout(**_layout(panel))
        if panel == "accuracy":
            fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
            fig.update_xaxes(title_text="epoch")
        else:
            fig.update_xaxes(title_text="minutes since start")
            fig.update_yaxes(title_text="MiB used", col=1)
            fig.update_yaxes(title_text="%", range=[0, 102], col=2)
    else:
        fig = go.Figure([s.trace() for s in series], layout=_layout(panel))
        if panel == "lr":
            fig.update_yaxes(exponentformat="e")
    if panel in EPOCH_PANELS:
        fig.update_xaxes(**epoch_ticks(series))
    if not any(s.x for s in series):
        fig.add_annotation(text="no data yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "#888"})  # fmt: skip
    return fig


def patch_figure(
    panel: str, keys: list[str], series: Sequence[Series]
) -> tuple[Patch | None, list[str]]:
    """A Patch that grows an already drawn figure by ``series`` (new points only).

    ``keys`` are the figure's trace keys in order. Returns (None, keys) when there is nothing
    to send, else the patch and the keys after it (new traces are appended at the end).
    """
    patch, keys, changed = Patch(), list(keys), False
    for s in series:
        if s.key in keys:
            i = keys.index(s.key)
            if s.replace:
                patch["data"][i]["x"] = list(s.x)
                patch["data"][i]["y"] = list(s.y)
                if "text" in s.style:
                    patch["data"][i]["text"] = s.style["text"]
                changed = True
            elif s.x:
                patch["data"][i]["x"].extend(list(s.x))
                patch["data"][i]["y"].extend(list(s.y))
                changed = True
        elif s.x:
            trace = s.trace().to_plotly_json()
            if panel in ("accuracy", "devices") and s.col == 2:
                trace.update(xaxis="x2", yaxis="y2")  # make_subplots' second axes
            patch["data"].append(trace)
            keys.append(s.key)
            changed = True
    if changed and panel in EPOCH_PANELS:
        # new epochs may call for sparser ticks; a few bytes, sent only with new points
        ticks = epoch_ticks(series)
        for axis in ("xaxis", "xaxis2") if panel == "accuracy" else ("xaxis",):
            patch["layout"][axis]["dtick"] = ticks["dtick"]
    return (patch if changed else None), keys


def figure_keys(series: Sequence[Series]) -> list[str]:
    return [s.key for s in series]
