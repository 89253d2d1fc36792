"""What the /confusion page's callbacks ask for, from a run directory to figures and records.

Kept free of Dash components so it can be timed (bench/confusion_bench.py) and tested alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from dashboard.confusion.difference import PLOTLY_DIVERGING, render_difference
from dashboard.kit.images import DrillImage, image_cards
from epochscope.analysis.bands import UNKNOWN, band_runs
from epochscope.analysis.confusion import (
    Mode,
    Norm,
    Pair,
    most_confused,
    row_share,
    row_totals,
    value_label,
)
from epochscope.analysis.ordering import OrderKind
from epochscope.analysis.per_class import table_rows
from epochscope.run import Run

from . import data
from .drilldown import pair_rows
from .figure import PLOT_PX, ColourKey, HoverGrid, matrix_spec
from .render import Scale, render
from .view import Range, clamp


@dataclass
class MatrixView:
    figure: dict[str, Any]  # a Plotly figure spec, ready for dcc.Graph
    grid: HoverGrid
    x: Range
    y: Range
    seconds: float  # server time: render and figure, without JSON encoding
    image_bytes: int
    top1: float  # accuracy of the epoch: diagonal / images (top-5 mode: in the top-5)
    stats: dict[str, Any] = field(default_factory=dict)


MODE_LABEL = {"top5": "top-5", "top1": "top-1"}


def order_options(run: Run) -> list[dict[str, str]]:
    """The class orders a run can be shown in, as radio options; the hierarchy order first,
    named after the run's hierarchy, and only when it has one."""
    options = [{"label": "index", "value": "index"}, {"label": "clustered", "value": "cluster"}]
    if run.hierarchy is not None:
        options.insert(0, {"label": run.order_label("wordnet"), "value": "wordnet"})
    return options


def class_columns(run: Run, columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-class table's columns without those that would be empty or repeat another: no
    band column without bands, no wnid column where the ids are the names."""
    drop = set()
    if not run.has_bands:
        drop.add("band")
    if run.wnids == run.names:
        drop.add("wnid")
    return [c for c in columns if c["id"] not in drop]


def slot_names(run: Run, kind: OrderKind) -> list[str]:
    """Class names in display order (the axes name classes when they are legible)."""
    return run.memo(("slot_names", run.effective_order(kind)),
                    lambda: [run.names[i] for i in run.order(kind)])  # fmt: skip


def bands_for(run: Run, kind: OrderKind) -> list:
    return band_runs(run.bands, run.order(kind)) if run.has_bands else []


@dataclass(frozen=True)
class Compare:
    """The other side of a difference view: run B (or the same run) at an epoch."""

    run: Run
    epoch: int


def _title(run: Run, epoch: int, mode: Mode, kind: OrderKind, acc: float,
           compare: Compare | None, norm: Norm, hide_diagonal: bool) -> str:  # fmt: skip
    what = f"{MODE_LABEL[mode]} guesses · {run.order_label(kind)}"
    extra = (" · diagonal hidden" if hide_diagonal else "") + (
        " · row-normalised" if norm == "row" and compare is None else ""
    )
    if compare is not None:
        b = compare.run.name
        return (
            f"{run.name} epoch {epoch} minus {b} epoch {compare.epoch} · {what}{extra}"
            " · red: more in A, blue: more in B (share of the true class's images)"
        )
    return (
        f"{run.name} · epoch {epoch} · {what}{extra} · rows: true class, columns: predicted"
        f" · {MODE_LABEL[mode]} accuracy {acc:.1%}"
    )


def matrix_view(
    run: Run,
    epoch: int,
    mode: Mode,
    kind: OrderKind,
    scale: Scale,
    x: Range,
    y: Range,
    pixels: int = PLOT_PX,
    *,
    size: tuple[int, int] | None = None,
    hide_diagonal: bool = False,
    norm: Norm = "count",
    compare: Compare | None = None,
    highlight: int | None = None,
) -> MatrixView:
    """The figure of the visible range. ``compare``: draw this epoch minus the other side's;
    ``highlight``: outline a class's row and column (a class index)."""
    t0 = time.perf_counter()
    w, h = size or (pixels, pixels)
    conf = run.confusion(epoch, mode)
    acc = float(conf.diagonal().sum() / max(len(run.labels), 1))
    if compare is not None:
        pts = data.difference_points(
            run, epoch, compare.run, compare.epoch, mode, kind, hide_diagonal
        )
        rendered = render_difference(pts, x, y, w, h)
        colour = ColourKey("Δ share", tuple(PLOTLY_DIVERGING), "delta")
    else:
        pts = data.points(run, epoch, mode, kind, hide_diagonal, norm)
        rendered = render(pts, x, y, w, h, scale)
        colour = ColourKey(value_label(norm), kind="share" if norm == "row" else "count")
    slot = None
    if highlight is not None and 0 <= highlight < run.num_classes:
        slot = float(run.positions(kind)[highlight])
    fig, grid = matrix_spec(
        rendered,
        run.num_classes,
        x,
        y,
        bands_for(run, kind),
        _title(run, epoch, mode, kind, acc, compare, norm, hide_diagonal),
        size=(w, h),
        colour=colour,
        highlight=slot,
        slot_names=slot_names(run, kind),
    )
    return MatrixView(fig, grid, x, y, time.perf_counter() - t0, len(rendered.image), acc)


def figure_json(fig: dict[str, Any] | go.Figure) -> str:
    """The figure as Dash sends it (Plotly's encoder: numpy arrays as base64)."""
    return pio.to_json(fig, validate=False, engine="json")


@dataclass(frozen=True)
class Cell:
    true: int
    pred: int
    count: int
    share: float
    images: int
    grouped: bool  # the hover cell spans several classes: this is its brightest cell
    other: Cell | None = None  # the same cell on the other side of a comparison
    row_share: float = 0.0  # its share of the row's drawn guesses (the row-normalised colour)


def cell_at(
    run: Run,
    epoch: int,
    mode: Mode,
    kind: OrderKind,
    grid: HoverGrid,
    x: float,
    y: float,
    *,
    hide_diagonal: bool = False,
    norm: Norm = "count",
    compare: Compare | None = None,
) -> Cell | None:
    """The class pair under a hover/click point (a hover-grid cell centre); for a grouped cell
    the one drawn brightest (largest value, or largest change in a comparison). None for a
    stale point or an empty grouped cell."""
    ranges = grid.cell(x, y)
    if ranges is None:
        return None
    (x0, x1), (y0, y1) = ranges
    order = run.order(kind)
    conf = run.confusion(epoch, mode)
    c = conf.num_classes
    if x0 >= c or y0 >= c or x1 <= 0 or y1 <= 0:
        return None
    grouped = x1 - x0 > 1 or y1 - y0 > 1
    if not grouped:
        true, pred = int(order[y0]), int(order[x0])
    else:
        if compare is not None:
            pts = data.difference_points(
                run, epoch, compare.run, compare.epoch, mode, kind, hide_diagonal
            )
        else:
            pts = data.points(run, epoch, mode, kind, hide_diagonal, norm)
        frame = pts.frame
        xs, ys = frame["x"].to_numpy(), frame["y"].to_numpy()
        inside = np.flatnonzero((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1))
        if inside.size == 0:
            return None  # nothing under the pointer to name
        best = inside[np.argmax(np.abs(frame["n"].to_numpy()[inside]))]
        true, pred = int(order[int(ys[best])]), int(order[int(xs[best])])
    other = None
    if compare is not None:
        conf_b = compare.run.confusion(compare.epoch, mode)
        other = Cell(true, pred, conf_b.count(true, pred), conf_b.share(true, pred),
                     int(conf_b.images[true]), grouped)  # fmt: skip
    n = int(conf.images[true])
    count = conf.count(true, pred)
    row = row_share(conf, true, pred, hide_diagonal)
    return Cell(true, pred, count, count / n if n else 0.0, n, grouped, other, row)


def describe_class(run: Run, index: int) -> dict[str, str]:
    band = run.bands[index]
    return {
        "name": run.names[index],
        "wnid": run.wnids[index],
        "band": band if band != UNKNOWN else "",
    }


def drill(
    run: Run,
    epoch: int,
    mode: Mode,
    true: int,
    pred: int,
    limit: int = 24,
    allowed: list[Path] | None = None,
) -> list[DrillImage]:
    """The validation images of a cell with their top-5; thumbnails only from an allowed root
    (``thumbnail_source``)."""
    top5, _ = run.predictions(epoch)
    rows = pair_rows(run.labels, top5, true, pred, mode, limit)
    return _drill_images(run, epoch, rows, allowed)


def drill_class(
    run: Run, epoch: int, index: int, limit: int = 24, allowed: list[Path] | None = None
) -> list[DrillImage]:
    """The validation images of one class with their top-5: wrong first guesses first."""
    top5, _ = run.predictions(epoch)
    rows = np.flatnonzero(run.labels == index)
    right = top5[rows, 0] == index
    rows = np.concatenate([rows[~right], rows[right]])[:limit]
    return _drill_images(run, epoch, rows, allowed)


def _drill_images(
    run: Run, epoch: int, rows: np.ndarray, allowed: list[Path] | None = None
) -> list[DrillImage]:
    return image_cards(run, epoch, [int(r) for r in rows], allowed)


def pairs(
    run: Run,
    epoch: int,
    mode: Mode,
    band: str | None,
    limit: int = 50,
    norm: Norm = "count",
    hide_diagonal: bool = False,
) -> list[dict[str, Any]]:
    """Rows of the most-confused-pairs table: by count, "share" = % of the true class's
    images; row-normalised (as the matrix is then coloured) by and with "share" = % of the
    row's drawn guesses."""
    conf = run.confusion(epoch, mode)
    found = most_confused(conf, run.bands, band, limit if norm == "count" else conf.num_classes**2)
    if norm == "row":
        totals = np.maximum(row_totals(conf, hide_diagonal), 1)
        found = [Pair(p.true, p.pred, p.count, p.count / totals[p.true]) for p in found]
        found = sorted(found, key=lambda p: (-p.share, -p.count, p.true, p.pred))[:limit]
    return [
        {
            "true": run.names[p.true],
            "predicted": run.names[p.pred],
            "count": p.count,
            "share": round(100 * p.share, 1),
            "true_band": run.bands[p.true],
            "pred_band": run.bands[p.pred],
            "true_index": p.true,
            "pred_index": p.pred,
        }
        for p in found
    ]


def band_names(run: Run) -> list[str]:
    return sorted({b for b in run.bands if b != UNKNOWN})


def reply_size(view: MatrixView) -> int:
    return len(figure_json(view.figure).encode()) + len(json.dumps(view.grid.to_dict()))


ZOOM_SLOTS = 24  # a class search zooms to this many classes around the one found


def find_classes(run: Run, text: str, limit: int = 20) -> list[int]:
    """Class indices whose name or wnid contains ``text`` (case-insensitive): exact name or
    wnid matches first, then names that start with it, then the rest, each in index order."""
    needle = (text or "").strip().lower()
    if not needle:
        return []
    hits = []
    for i, (name, wnid) in enumerate(zip(run.names, run.wnids, strict=True)):
        n, w = name.lower(), wnid.lower()
        if needle in n or needle in w:
            rank = 0 if needle in (n, w) else 1 if n.startswith(needle) else 2
            hits.append((rank, i))
    return [i for _, i in sorted(hits)[:limit]]


def zoom_to_class(run: Run, kind: OrderKind, index: int) -> tuple[Range, Range]:
    """The view centred on a class's own cell: its row and column, ZOOM_SLOTS classes wide
    (half the classes when there are fewer than 48)."""
    c = run.num_classes
    slot = float(run.positions(kind)[index])
    half = min(ZOOM_SLOTS, max(c // 2, 2)) / 2  # a small run zooms too
    rng = clamp((slot + 0.5 - half, slot + 0.5 + half), c)
    return rng, rng


def class_table(
    run: Run, epoch: int, since: int | None = None, compare: Compare | None = None
) -> list[dict[str, Any]]:
    """Rows of the per-class table at ``epoch``: change since the previous epoch and since
    ``since``; with ``compare``, the other side's top-1 and the difference."""
    done = run.epochs
    stats = run.class_stats(epoch)
    prev = max((e for e in done if e < epoch), default=None)
    previous = run.class_stats(prev) if prev is not None else None
    then = run.class_stats(since) if since in done else None
    other = None
    if compare is not None:
        run.check_same_classes(compare.run)
        other = compare.run.class_stats(compare.epoch)
    return table_rows(stats, run.names, run.wnids, run.bands, previous, then, other)
