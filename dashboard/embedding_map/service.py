"""The map page's replies, each taking a Run: the view of a visible range, what is under the
pointer, and the images around a clicked point.

What a view derives from a Run (the points with their KD-tree, the colours) is kept in that
Run's memo, under the worker's one bound on its Runs (dashboard.runs).
"""

from __future__ import annotations

import colorsys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dashboard.embedding_map.extent import EXTENT, Range
from dashboard.embedding_map.figure import PLOT_H, PLOT_W, HoverGrid, map_spec, waiting_spec
from dashboard.embedding_map.jobs import JOBS, LayoutJobs
from dashboard.kit.bands import band_colour
from dashboard.kit.images import DrillImage, image_cards
from dashboard.kit.points import MapPoints, map_points, render_map
from epochscope.analysis.bands import UNKNOWN
from epochscope.embeddings import EMBEDDINGS_MISSING
from epochscope.run import Run

ColourBy = Literal["band", "class"]
COLOUR_BY: tuple[ColourBy, ...] = ("band", "class")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def class_colours(num_classes: int) -> np.ndarray:
    """uint8 [C, 3]: hues a golden angle apart, so classes next to each other in the index
    (often neighbours in WordNet) differ."""
    out = np.empty((num_classes, 3), dtype=np.uint8)
    for c in range(num_classes):
        h = (c * 0.618033988749895) % 1.0
        s, v = (0.55, 0.95) if c % 2 else (0.75, 0.85)
        out[c] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def colours(run: Run, by: ColourBy) -> np.ndarray:
    """uint8 [N, 3]: each validation image's colour (its class's band, or its class)."""

    def build() -> np.ndarray:
        if by == "class" or not run.has_bands:
            table = class_colours(run.num_classes)
        else:
            table = np.array([_rgb(band_colour(b)) for b in run.bands], dtype=np.uint8)
        return table[run.labels]

    return run.memo(("map_colours", by), build)


def legend(run: Run) -> list[tuple[str, str, int]]:
    """(band, colour, images) of the bands drawn, most images first; empty without bands."""
    if not run.has_bands:
        return []

    def build() -> list[tuple[str, str, int]]:
        per_class = np.bincount(run.labels, minlength=run.num_classes)
        counts: dict[str, int] = {}
        for b, n in zip(run.bands, per_class, strict=True):
            counts[b] = counts.get(b, 0) + int(n)
        rows = [(b or "(outside the hierarchy)", band_colour(b), n) for b, n in counts.items()]
        return sorted(rows, key=lambda r: (-r[2], r[0]))

    return run.memo(("map_legend",), build)


#: a run with at most this many classes lists them in the legend when coloured by class
CLASS_LEGEND_MAX = 24


def class_legend(run: Run) -> list[tuple[str, str, int]]:
    """(class, colour, images) of every class, index order, when there are few enough to
    name (:data:`CLASS_LEGEND_MAX`); empty otherwise."""
    if run.num_classes > CLASS_LEGEND_MAX:
        return []
    per_class = np.bincount(run.labels, minlength=run.num_classes)
    table = class_colours(run.num_classes)
    return [
        (run.names[c], "#{:02x}{:02x}{:02x}".format(*table[c]), int(per_class[c]))
        for c in range(run.num_classes)
    ]


def points(run: Run, epoch: int) -> MapPoints | None:
    """The epoch's layout ready to render, or None while it is not computed yet."""
    coords = run.cached_map_layout(epoch)
    if coords is None:
        return None
    return run.memo(("map_points", epoch), lambda: map_points(coords))


@dataclass(frozen=True)
class MapView:
    figure: dict[str, Any]
    state: str  # ready, computing, failed, missing; "previous": another epoch while computing
    message: str = ""
    x: Range = EXTENT
    y: Range = EXTENT
    grid: HoverGrid | None = None
    seconds: float = 0.0
    image_bytes: int = 0
    drawn: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None  # the epoch drawn


def map_view(
    run: Run,
    epoch: int | None,
    by: ColourBy,
    x: Range = EXTENT,
    y: Range = EXTENT,
    size: tuple[int, int] = (PLOT_W, PLOT_H),
    jobs: LayoutJobs = JOBS,
) -> MapView:
    """The figure of the visible range of an epoch's map, or a figure saying why there is none
    yet (no embeddings; the layout being computed, which this call starts when needed)."""
    t0 = time.perf_counter()
    if not run.embedding_epochs:
        return MapView(waiting_spec(EMBEDDINGS_MISSING), "missing", EMBEDDINGS_MISSING)
    e = run.embedding_epochs[-1] if epoch is None else epoch
    if e not in run.embedding_epochs:
        msg = f"epoch {e} has no embeddings (epochs {', '.join(map(str, run.embedding_epochs))})"
        return MapView(waiting_spec(msg), "missing", msg)
    pts = points(run, e)
    if pts is None:
        job = jobs.request(run, e)
        if job.error is not None:
            msg = f"the layout of epoch {e} failed: {job.error}"
            return MapView(waiting_spec(msg), "failed", msg)
        msg = (
            f"Laying out the {len(run.labels):,} validation images of epoch {e} "
            f"({job.seconds:.0f} s so far; a minute or two per 50,000 images, once per epoch)"
        )
        shown = newest_laid_out(run, exclude=e)
        if shown is None:
            return MapView(waiting_spec(msg), "computing", msg)
        view = map_view(run, shown, by, x, y, size, jobs)
        note = f"Showing epoch {shown}, the newest laid out. {msg}; it replaces this when ready."
        return replace(view, state="previous", message=note)
    w, h = size
    rendered = render_map(pts, colours(run, by), x, y, w, h)
    coloured = "band" if by == "band" and run.has_bands else "class"
    title = f"{run.name}: embedding map, epoch {e} · {len(pts):,} images coloured by {coloured}"
    fig, grid = map_spec(rendered, title, size)
    seconds = time.perf_counter() - t0
    return MapView(
        fig, "ready", "", rendered.x, rendered.y, grid, seconds, len(rendered.image),
        rendered.drawn, epoch=e,
    )  # fmt: skip


def newest_laid_out(run: Run, exclude: int | None = None) -> int | None:
    """The newest epoch whose layout some process already computed (none is started)."""
    for e in reversed(run.embedding_epochs):
        if e != exclude and points(run, e) is not None:
            return e
    return None


def nearest_row(run: Run, epoch: int, x: float, y: float, radius: float) -> int | None:
    """The validation image nearest to (x, y) within ``radius`` (map units), or None."""
    pts = points(run, epoch)
    if pts is None:
        return None
    dist, row = pts.tree.query([x, y], k=1, distance_upper_bound=radius)  # type: ignore[attr-defined]
    return int(row) if np.isfinite(dist) and row < len(pts) else None


def describe_row(run: Run, row: int) -> dict[str, str]:
    c = int(run.labels[row])
    band = run.bands[c] if run.has_bands else UNKNOWN
    return {
        "name": run.names[c],
        "wnid": run.wnids[c],
        "band": band,
        "path": run.paths[row],
        "row": str(row),
    }


def rows_near(run: Run, epoch: int, row: int, k: int = 12) -> list[int]:
    """``row`` and the images nearest to it on the map, closest first."""
    pts = points(run, epoch)
    if pts is None:
        return [row]
    xy = pts.frame[["x", "y"]].to_numpy()[row]
    _, rows = pts.tree.query(xy, k=min(k, len(pts)))  # type: ignore[attr-defined]
    rows = [int(r) for r in np.atleast_1d(rows)]
    return [row, *(r for r in rows if r != row)][:k]


def images(
    run: Run, epoch: int, rows: list[int], allowed: list[Path] | None = None
) -> list[DrillImage]:
    """The drill-down's cards for ``rows``: thumbnail (from an allowed root only) and top-5 of
    the epoch's predictions (none when the epoch has no predictions)."""
    return image_cards(run, epoch, rows, allowed)
