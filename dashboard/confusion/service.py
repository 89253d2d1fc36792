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

from . import data
from .bands import UNKNOWN, band_runs
from .drilldown import most_confused, pair_rows, safe_image_path, thumbnail_uri
from .figure import PLOT_PX, HoverGrid, matrix_spec
from .histogram import Mode
from .ordering import OrderKind
from .render import Scale, render
from .view import Range


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


def bands_for(run_dir: Path, kind: OrderKind) -> list:
    meta = data.run_meta(run_dir)
    return band_runs(meta.bands, data.order(run_dir, kind)) if meta.has_bands else []


def matrix_view(
    run_dir: Path,
    epoch: int,
    mode: Mode,
    kind: OrderKind,
    scale: Scale,
    x: Range,
    y: Range,
    pixels: int = PLOT_PX,
) -> MatrixView:
    t0 = time.perf_counter()
    meta = data.run_meta(run_dir)
    pts = data.points(run_dir, epoch, mode, kind)
    rendered = render(pts, x, y, pixels, pixels, scale)
    conf = data.epoch_confusion(run_dir, epoch, mode)
    acc = float(conf.diagonal().sum() / max(len(meta.labels), 1))
    title = (
        f"{run_dir.name} · epoch {epoch} · {MODE_LABEL[mode]} guesses · {ORDER_LABEL[kind]}"
        f" · rows: true class, columns: predicted · {MODE_LABEL[mode]} accuracy {acc:.1%}"
    )
    fig, grid = matrix_spec(
        rendered,
        meta.num_classes,
        x,
        y,
        bands_for(run_dir, kind),
        title,
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


def cell_at(
    run_dir: Path, epoch: int, mode: Mode, kind: OrderKind, grid: HoverGrid, x: float, y: float
) -> Cell | None:
    """The class pair under a hover/click point (a hover-grid cell centre); for a grouped cell
    its largest count. None for a stale point or an empty grouped cell."""
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
        frame = data.points(run_dir, epoch, mode, kind).frame
        xs, ys = frame["x"].to_numpy(), frame["y"].to_numpy()
        inside = np.flatnonzero((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1))
        if inside.size == 0:
            return None  # nothing under the pointer to name
        best = inside[np.argmax(frame["n"].to_numpy()[inside])]
        true, pred = int(order[int(ys[best])]), int(order[int(xs[best])])
    n = int(conf.images[true])
    count = conf.count(true, pred)
    return Cell(true, pred, count, count / n if n else 0.0, n, grouped)


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


def drill(
    run_dir: Path, epoch: int, mode: Mode, true: int, pred: int, limit: int = 24
) -> list[DrillImage]:
    """The validation images of a cell with their top-5; thumbnails only from inside data.root."""
    meta = data.run_meta(run_dir)
    top5, prob = data.predictions(run_dir, epoch)
    out = []
    for r in pair_rows(meta.labels, top5, true, pred, mode, limit):
        r = int(r)
        rel = meta.paths[r]
        guesses = [
            (int(k), meta.names[int(k)], float(p)) for k, p in zip(top5[r], prob[r], strict=True)
        ]
        out.append(DrillImage(r, rel, thumbnail_uri(safe_image_path(meta.data_root, rel)), guesses))
    return out


def pairs(
    run_dir: Path, epoch: int, mode: Mode, band: str | None, limit: int = 50
) -> list[dict[str, Any]]:
    """Rows of the most-confused-pairs table."""
    meta = data.run_meta(run_dir)
    conf = data.epoch_confusion(run_dir, epoch, mode)
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
        for p in most_confused(conf, meta.bands, band, limit)
    ]


def band_names(run_dir: Path) -> list[str]:
    meta = data.run_meta(run_dir)
    return sorted({b for b in meta.bands if b != UNKNOWN})


def reply_size(view: MatrixView) -> int:
    return len(figure_json(view.figure).encode()) + len(json.dumps(view.grid.to_dict()))
