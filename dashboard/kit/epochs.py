"""The epoch slider with Play, as pure functions the pages' callbacks call: which epoch the
slider shows as a run grows, its marks, and what Play starts from and steps to."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: a slider labels at most about this many of its marks
LABELS = 15


def follow(
    epochs: Sequence[int], current: int | None, old_max: int | None, run_changed: bool
) -> int:
    """The epoch to show: the latest while the slider sat on the latest (a live run is
    followed), or for another run; else the one shown."""
    last = epochs[-1]
    if run_changed or current is None or current == old_max or current not in epochs:
        return last
    return current


def every_epoch_marks(epochs: Sequence[int]) -> dict[int, str]:
    """A mark at every epoch (the slider stops only there: kept epochs may have gaps), a label
    on every few and on the last."""
    step = max(1, math.ceil(len(epochs) / LABELS))
    last = epochs[-1]
    return {e: str(e) if i % step == 0 or e == last else "" for i, e in enumerate(epochs)}


def range_marks(last: int) -> dict[int, str]:
    """Labelled marks on a slider over 1..last (every whole epoch a stop)."""
    step = max(1, math.ceil(last / LABELS))
    return {e: str(e) for e in range(1, last + 1, step)} | {last: str(last)}


def marked_epochs(marks: Mapping[Any, Any] | None) -> list[int]:
    """The epochs of a slider's marks (their keys come back from the browser as text)."""
    out = []
    for key in marks or {}:
        try:
            out.append(int(key))
        except (TypeError, ValueError):
            continue
    return sorted(out)


def play_start(epochs: Sequence[int], epoch: int | None) -> int:
    """Where Play starts: from the first epoch when sitting on the last (or nowhere)."""
    return epochs[0] if epoch is None or epoch >= epochs[-1] else epoch


def play_next(epochs: Sequence[int], epoch: int) -> int | None:
    """The epoch Play steps to after ``epoch``; None: stop (the latest is shown)."""
    later = [e for e in epochs if e > epoch]
    return later[0] if later else None


def stops(step: float | None, low: int | None, high: int | None, marks: Any) -> list[int]:
    """The epochs a slider stops at: its marks when ``step`` is None, else every whole epoch
    from ``low`` to ``high``."""
    if step is None:
        return marked_epochs(marks)
    if low is None or high is None:
        return []
    return list(range(int(low), int(high) + 1))


def register_play(slider: str, button: str, interval: str, ready: str | None = None) -> None:
    """Play/Pause for an epoch slider: ``button`` starts and stops ``interval``, each tick
    steps ``slider`` to its next stop. With ``ready`` (a store holding the drawn view's
    ``epoch``), a step waits until the shown epoch is drawn (a map still being laid out)."""
    from dash import Input, Output, State, callback, no_update
    from dash.exceptions import PreventUpdate

    from dashboard.shell import tolerant

    slider_state = [State(slider, p) for p in ("value", "min", "max", "step", "marks")]

    @callback(
        Output(interval, "disabled"),
        Output(button, "children"),
        Output(slider, "value", allow_duplicate=True),
        Input(button, "n_clicks"),
        State(interval, "disabled"),
        *slider_state,
        prevent_initial_call=True,
    )
    @tolerant
    def toggle_play(_clicks: int, disabled: bool, epoch: int | None, *slider_props: Any):
        epochs = stops(slider_props[2], slider_props[0], slider_props[1], slider_props[3])
        if not epochs:
            raise PreventUpdate
        if disabled:  # start; from the first epoch when sitting on the last
            return False, "Pause", play_start(epochs, epoch)
        return True, "Play", no_update

    @callback(
        Output(slider, "value", allow_duplicate=True),
        Output(interval, "disabled", allow_duplicate=True),
        Output(button, "children", allow_duplicate=True),
        Input(interval, "n_intervals"),
        *slider_state,
        *([State(ready, "data")] if ready else []),
        prevent_initial_call=True,
    )
    @tolerant
    def play_step(_n: int, epoch: int | None, low: Any, high: Any, step: Any, marks: Any,
                  view: dict | None = None):  # fmt: skip
        epochs = stops(step, low, high, marks)
        if epoch is None or not epochs:
            raise PreventUpdate
        if ready and (not view or view.get("epoch") != epoch):
            raise PreventUpdate  # the shown epoch is still being drawn: wait for it
        following = play_next(epochs, epoch)
        if following is None:
            return no_update, True, "Play"  # stop at the latest epoch
        return following, no_update, no_update
