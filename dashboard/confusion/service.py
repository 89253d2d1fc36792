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

from assets.catalogue import load_catalogue
from dashboard import config

from . import data
from .bands import UNKNOWN, band_runs
from .cells import Norm, row_share, row_totals, value_label
from .difference import PLOTLY_DIVERGING, render_difference
from .drilldown import (
    ImageSource,
    Pair,
    image_source,
    most_confused,
    pair_rows,
    safe_image_path,
    stored_thumbnail_uri,
    thumbnail_uri,
)
from .figure import PLOT_PX, ColourKey, HoverGrid, matrix_spec
from .histogram import Mode
from .ordering import OrderKind
from .per_class import table_rows
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
ORDER_LABEL = {"wordnet": "WordNet order", "index": "index order", "cluster": "clustered order"}


def order_label(run_dir: Path, kind: OrderKind) -> str:
    """What the order is for this run: the run's own hierarchy, WordNet, or clustered (the
    hierarchy order of a run without a hierarchy)."""
    effective = data.effective_order(run_dir, kind)
    if effective == "wordnet" and data.run_meta(run_dir).hierarchy is not None:
        hierarchy = data.run_meta(run_dir).hierarchy
        return "WordNet order" if hierarchy is load_catalogue() else "hierarchy order"
    return ORDER_LABEL[effective]


def bands_for(run_dir: Path, kind: OrderKind) -> list:
    meta = data.run_meta(run_dir)
    return band_runs(meta.bands, data.order(run_dir, kind)) if meta.has_bands else []


@dataclass(frozen=True)
class Compare:
    """The other side of a difference view: run B (or the same run) at an epoch."""

    run_dir: Path
    epoch: int


def _title(run_dir: Path, epoch: int, mode: Mode, kind: OrderKind, acc: float,
           compare: Compare | None, norm: Norm, hide_diagonal: bool) -> str:  # fmt: skip
    what = f"{MODE_LABEL[mode]} guesses · {order_label(run_dir, kind)}"
    extra = (" · diagonal hidden" if hide_diagonal else "") + (
        " · row-normalised" if norm == "row" and compare is None else ""
    )
    if compare is not None:
        b = compare.run_dir.name
        return (
            f"{run_dir.name} epoch {epoch} minus {b} epoch {compare.epoch} · {what}{extra}"
            " · red: more in A, blue: more in B (share of the true class's images)"
        )
    return (
        f"{run_dir.name} · epoch {epoch} · {what}{extra} · rows: true class, columns: predicted"
        f" · {MODE_LABEL[mode]} accuracy {acc:.1%}"
    )


def matrix_view(
    run_dir: Path,
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
    meta = data.run_meta(run_dir)
    w, h = size or (pixels, pixels)
    conf = data.epoch_confusion(run_dir, epoch, mode)
    acc = float(conf.diagonal().sum() / max(len(meta.labels), 1))
    if compare is not None:
        pts = data.difference_points(
            run_dir, epoch, compare.run_dir, compare.epoch, mode, kind, hide_diagonal
        )
        rendered = render_difference(pts, x, y, w, h)
        colour = ColourKey("Δ share", tuple(PLOTLY_DIVERGING), "delta")
    else:
        pts = data.points(run_dir, epoch, mode, kind, hide_diagonal, norm)
        rendered = render(pts, x, y, w, h, scale)
        colour = ColourKey(value_label(norm), kind="share" if norm == "row" else "count")
    slot = None
    if highlight is not None and 0 <= highlight < meta.num_classes:
        slot = float(data.slot_positions(run_dir, kind)[highlight])
    fig, grid = matrix_spec(
        rendered,
        meta.num_classes,
        x,
        y,
        bands_for(run_dir, kind),
        _title(run_dir, epoch, mode, kind, acc, compare, norm, hide_diagonal),
        size=(w, h),
        colour=colour,
        highlight=slot,
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
    run_dir: Path,
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
    order = data.order(run_dir, kind)
    conf = data.epoch_confusion(run_dir, epoch, mode)
    c = conf.num_classes
    if x0 >= c or y0 >= c or x1 <= 0 or y1 <= 0:
        return None
    grouped = x1 - x0 > 1 or y1 - y0 > 1
    if not grouped:
        true, pred = int(order[y0]), int(order[x0])
    else:
        if compare is not None:
            pts = data.difference_points(
                run_dir, epoch, compare.run_dir, compare.epoch, mode, kind, hide_diagonal
            )
        else:
            pts = data.points(run_dir, epoch, mode, kind, hide_diagonal, norm)
        frame = pts.frame
        xs, ys = frame["x"].to_numpy(), frame["y"].to_numpy()
        inside = np.flatnonzero((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1))
        if inside.size == 0:
            return None  # nothing under the pointer to name
        best = inside[np.argmax(np.abs(frame["n"].to_numpy()[inside]))]
        true, pred = int(order[int(ys[best])]), int(order[int(xs[best])])
    other = None
    if compare is not None:
        conf_b = data.epoch_confusion(compare.run_dir, compare.epoch, mode)
        other = Cell(true, pred, conf_b.count(true, pred), conf_b.share(true, pred),
                     int(conf_b.images[true]), grouped)  # fmt: skip
    n = int(conf.images[true])
    count = conf.count(true, pred)
    row = row_share(conf, true, pred, hide_diagonal)
    return Cell(true, pred, count, count / n if n else 0.0, n, grouped, other, row)


def describe_class(run_dir: Path, index: int) -> dict[str, str]:
    meta = data.run_meta(run_dir)
    band = meta.bands[index]
    return {
        "name": meta.names[index],
        "wnid": meta.wnids[index],
        "band": band if band != UNKNOWN else "",
    }


@dataclass(frozen=True)
class DrillImage:
    row: int
    path: str
    thumbnail: str | None  # data URI, None when the data root is unreachable or unsafe
    top5: list[tuple[int, str, float]]  # (class index, name, probability)


def thumbnail_source(run_dir: Path, allowed: list[Path] | None = None) -> ImageSource:
    """Where the drill-down's thumbnails of this run may come from (the allowed roots:
    EPOCHSCOPE_DATA_ROOTS unless given)."""
    allowed = config.data_roots() if allowed is None else allowed
    return image_source(run_dir, data.run_meta(run_dir).data_root, allowed)


def drill(
    run_dir: Path,
    epoch: int,
    mode: Mode,
    true: int,
    pred: int,
    limit: int = 24,
    allowed: list[Path] | None = None,
) -> list[DrillImage]:
    """The validation images of a cell with their top-5; thumbnails only from an allowed root
    (``thumbnail_source``)."""
    meta = data.run_meta(run_dir)
    top5, _ = data.predictions(run_dir, epoch)
    rows = pair_rows(meta.labels, top5, true, pred, mode, limit)
    return _drill_images(run_dir, epoch, rows, allowed)


def drill_class(
    run_dir: Path, epoch: int, index: int, limit: int = 24, allowed: list[Path] | None = None
) -> list[DrillImage]:
    """The validation images of one class with their top-5: wrong first guesses first."""
    meta = data.run_meta(run_dir)
    top5, _ = data.predictions(run_dir, epoch)
    rows = np.flatnonzero(meta.labels == index)
    right = top5[rows, 0] == index
    rows = np.concatenate([rows[~right], rows[right]])[:limit]
    return _drill_images(run_dir, epoch, rows, allowed)


def _drill_images(
    run_dir: Path, epoch: int, rows: np.ndarray, allowed: list[Path] | None = None
) -> list[DrillImage]:
    meta = data.run_meta(run_dir)
    top5, prob = data.predictions(run_dir, epoch)
    root = thumbnail_source(run_dir, allowed).root
    out = []
    for r in rows:
        r = int(r)
        rel = meta.paths[r]
        guesses = [
            (int(k), meta.names[int(k)], float(p)) for k, p in zip(top5[r], prob[r], strict=True)
        ]
        # a file under an allowed root, else the run's own thumbnails.bin (images as arrays)
        path = safe_image_path(str(root), rel) if root is not None and rel else None
        thumb = thumbnail_uri(path) or stored_thumbnail_uri(run_dir, r)
        out.append(DrillImage(r, rel, thumb, guesses))
    return out


def pairs(
    run_dir: Path,
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
    meta = data.run_meta(run_dir)
    conf = data.epoch_confusion(run_dir, epoch, mode)
    found = most_confused(conf, meta.bands, band, limit if norm == "count" else conf.num_classes**2)
    if norm == "row":
        totals = np.maximum(row_totals(conf, hide_diagonal), 1)
        found = [Pair(p.true, p.pred, p.count, p.count / totals[p.true]) for p in found]
        found = sorted(found, key=lambda p: (-p.share, -p.count, p.true, p.pred))[:limit]
    return [
        {
            "true": meta.names[p.true],
            "predicted": meta.names[p.pred],
            "count": p.count,
            "share": round(100 * p.share, 1),
            "true_band": meta.bands[p.true],
            "pred_band": meta.bands[p.pred],
            "true_index": p.true,
            "pred_index": p.pred,
        }
        for p in found
    ]


def band_names(run_dir: Path) -> list[str]:
    meta = data.run_meta(run_dir)
    return sorted({b for b in meta.bands if b != UNKNOWN})


def reply_size(view: MatrixView) -> int:
    return len(figure_json(view.figure).encode()) + len(json.dumps(view.grid.to_dict()))


ZOOM_SLOTS = 24  # a class search zooms to this many classes around the one found


def find_classes(run_dir: Path, text: str, limit: int = 20) -> list[int]:
    """Class indices whose name or wnid contains ``text`` (case-insensitive): exact name or
    wnid matches first, then names that start with it, then the rest, each in index order."""
    needle = (text or "").strip().lower()
    if not needle:
        return []
    meta = data.run_meta(run_dir)
    hits = []
    for i, (name, wnid) in enumerate(zip(meta.names, meta.wnids, strict=True)):
        n, w = name.lower(), wnid.lower()
        if needle in n or needle in w:
            rank = 0 if needle in (n, w) else 1 if n.startswith(needle) else 2
            hits.append((rank, i))
    return [i for _, i in sorted(hits)[:limit]]


def zoom_to_class(run_dir: Path, kind: OrderKind, index: int) -> tuple[Range, Range]:
    """The view centred on a class's own cell: its row and column, ZOOM_SLOTS classes wide
    (half the classes when there are fewer than 48)."""
    c = data.run_meta(run_dir).num_classes
    slot = float(data.slot_positions(run_dir, kind)[index])
    half = min(ZOOM_SLOTS, max(c // 2, 2)) / 2  # a small run zooms too
    rng = clamp((slot + 0.5 - half, slot + 0.5 + half), c)
    return rng, rng


def class_table(
    run_dir: Path, epoch: int, since: int | None = None, compare: Compare | None = None
) -> list[dict[str, Any]]:
    """Rows of the per-class table at ``epoch``: change since the previous epoch and since
    ``since``; with ``compare``, the other side's top-1 and the difference."""
    meta = data.run_meta(run_dir)
    done = data.epochs(run_dir)
    stats = data.epoch_class_stats(run_dir, epoch)
    prev = max((e for e in done if e < epoch), default=None)
    previous = data.epoch_class_stats(run_dir, prev) if prev is not None else None
    then = data.epoch_class_stats(run_dir, since) if since in done else None
    other = None
    if compare is not None:
        data.same_classes(run_dir, compare.run_dir)
        other = data.epoch_class_stats(compare.run_dir, compare.epoch)
    return table_rows(stats, meta.names, meta.wnids, meta.bands, previous, then, other)
