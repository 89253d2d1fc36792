"""Events of metrics.jsonl resolved into what views show: the epoch of an event, the table of
epoch events (the last one of a redone epoch wins), the last status, the best epoch. Pure
functions of parsed events: the reader, the Run, the live poll and the figures share them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from epochscope.records import clean_number

#: no run has more epochs; a larger "epoch" in a log is damage (a 400-digit one once broke the
#: figures of every run drawn with it)
MAX_EPOCH = 10**6


def event_epoch(event: dict[str, Any]) -> int | None:
    e = event.get("epoch")
    return e if isinstance(e, int) and not isinstance(e, bool) and 1 <= e <= MAX_EPOCH else None


def epoch_table(events: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Epoch events by epoch, ascending; for an epoch written twice (resume) the last one wins."""
    table: dict[int, dict[str, Any]] = {}
    for ev in events:
        e = event_epoch(ev)
        if ev.get("kind") == "epoch" and e is not None:
            table[e] = ev
    return dict(sorted(table.items()))


def last_status(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    status = None
    for ev in events:
        if ev.get("kind") == "status" and isinstance(ev.get("state"), str):
            status = ev
    return status


def best_epoch(table: dict[int, dict[str, Any]], key: str = "val_top5") -> int | None:
    """The epoch with the highest ``key`` (the earliest on ties), or None."""
    scored = [(e, v) for e, ev in table.items() if (v := clean_number(ev.get(key))) is not None]
    if not scored:
        return None
    return max(scored, key=lambda p: (p[1], -p[0]))[0]
