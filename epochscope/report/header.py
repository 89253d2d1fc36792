"""The report's header: model, data, hyper-parameters, status, devices and times, from run.json
and the run's events. No host name, command line or absolute path goes in (the data root is
shown by its last folder name only)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from epochscope.report.html import Section, kv_table
from epochscope.report.safe import basename, esc, without_folders

if TYPE_CHECKING:
    from epochscope.run import Run


def _when(t: float | None) -> str:
    if not t:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list | tuple):
        return ", ".join(_value(x) for x in v)
    return without_folders(str(v))


def times(run: Run) -> tuple[float | None, float | None]:
    """(first event's time or run.json's start, last event's time)."""
    events = run.events
    info = run.info_or_none
    first = (info.started if info and info.started else None) or (
        events[0].get("time") if events else None
    )
    last = events[-1].get("time") if events else None
    ok = [t if isinstance(t, int | float) else None for t in (first, last)]
    return ok[0], ok[1]


def header(run: Run, epoch: int | None) -> tuple[str, Section]:
    """(the title bar's HTML, the "Run" section)."""
    info = run.info_or_none
    table = run.epoch_events
    done = sorted(table)
    best = max(done, key=lambda e: table[e].get("val_top5") or 0) if done else None
    model = ""
    if info is not None:
        model = info.arch + (f" x{info.width:g}" if info.width and info.width != 1 else "")
        stem = info.hparams.get("stem") if isinstance(info.hparams, dict) else None
        if stem:
            model += f" ({stem} stem)"
    first, last = times(run)
    rows: list[tuple[str, Any]] = [("run", run.name), ("model", model or "?")]
    if info is not None:
        rows += [("engine", f"{info.engine} {info.engine_version}".strip())]
        d = info.data
        rows += [
            ("data", f"{basename(d.root) or '(arrays)'} ({d.layout})"
                     + (", synthetic demo shapes, not photos" if d.synthetic else "")),
            ("classes", run.num_classes),
            ("images", f"{d.num_train} train, {d.num_val} validation"),
        ]  # fmt: skip
        if d.loader:
            rows.append(("input pipeline", d.loader))
        total = f" of {info.epochs}" if info.epochs else ""
        rows.append(("epochs", f"{len(done)}{total}"))
        if info.batch_size:
            rows.append(("batch size", f"{info.batch_size} (world size {info.world_size})"))
        devices = [str(dv.get("name") or dv.get("kind") or "?") for dv in info.devices]
        if devices:
            rows.append(("devices", ", ".join(devices)))
    rows.append(("status", run.state))
    if first:
        rows.append(("started", _when(first)))
    if last:
        rows.append(("last event", _when(last)))
    if first and last:
        rows.append(("wall time", _duration(last - first)))
    if best is not None:
        v = table[best]
        rows.append(("best epoch", f"{best} (val top-5 {100 * (v.get('val_top5') or 0):.1f}%, "
                                   f"top-1 {100 * (v.get('val_top1') or 0):.1f}%)"))  # fmt: skip
    if epoch is not None:
        rows.append(("epoch shown", epoch))
    body = kv_table(rows)
    if info is not None and isinstance(info.hparams, dict) and info.hparams:
        hp = [
            (without_folders(str(k)), _value(v))
            for k, v in sorted(info.hparams.items(), key=lambda kv: str(kv[0]))
        ]
        body += f'<h3>Hyper-parameters</h3><div class="columns">{kv_table(hp)}</div>'
    title = (
        f'<header class="top"><h1>Epochscope report: {esc(run.name)}</h1>'
        f"<p>{esc(model)} &middot; {run.num_classes} classes &middot; "
        f"{'epoch ' + esc(epoch) if epoch is not None else 'no epochs yet'} &middot; "
        f"{esc(run.state)}</p></header>"
    )
    return title, Section("run", "Run", body)
