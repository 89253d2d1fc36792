"""The data map's replies, each taking a Run: the view of a visible range, the training image
under the pointer, and one image's card and history over the epochs.

The map is the training set's (Swayamdipta et al. 2020): every training image a point at
(variability, confidence) of the probability the training step gave its label, over the epochs
with statistics up to ``last``. What a view derives (the points, their colours) is kept in the
Run's memo, under the worker's one bound on its Runs (dashboard.runs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dashboard.data_map.figure import PLOT_H, PLOT_W, map_spec, waiting_spec
from dashboard.kit import zoom
from dashboard.kit.images import file_thumbnail, thumbnail_source
from dashboard.kit.points import MapPoints, map_points, render_map
from dashboard.kit.zoom import HoverGrid
from epochscope import train_labels
from epochscope.analysis.training_dynamics import BAND_NAMES, band_codes
from epochscope.run import Run

Range = zoom.Range
#: variability is the standard deviation of a probability (at most 0.5); confidence its mean
X_EXTENT: Range = (-0.01, 0.51)
Y_EXTENT: Range = (-0.02, 1.02)
MIN_SPAN = 1e-3

ColourBy = Literal["band", "correctness"]
COLOUR_BY: tuple[ColourBy, ...] = ("band", "correctness")
#: the regions' colours: easy green, ambiguous blue, hard (mostly label errors) red
BAND_COLOURS = {"easy": "#59a14f", "ambiguous": "#4e79a7", "hard": "#e15759", "unseen": "#888888"}
#: correctness (share of epochs the image was right) in the paper's bins, red (never) to green
CORRECTNESS_COLOURS = ("#d7301f", "#fc8d59", "#fdcc8a", "#d9ef8b", "#91cf60", "#1a9850")
CORRECTNESS_NAMES = (
    "right in under 20% of epochs",
    "right in 20-40%",
    "right in 40-60%",
    "right in 60-80%",
    "right in 80-99%",
    "right in every epoch",
)


def clamp_x(rng: Range) -> Range:
    return zoom.clamp(rng, X_EXTENT, MIN_SPAN)


def clamp_y(rng: Range) -> Range:
    return zoom.clamp(rng, Y_EXTENT, MIN_SPAN)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def correctness_bin(correctness: np.ndarray) -> np.ndarray:
    """int [N]: the bin of each image's correctness, 0 (never right) .. 5 (always right)."""
    last = len(CORRECTNESS_COLOURS) - 1
    c = np.nan_to_num(correctness, nan=0.0)
    return np.clip(np.floor(c * last + 1e-6), 0, last).astype(np.int64)


@dataclass(frozen=True, eq=False)
class DataMap:
    """The points of one epoch range, their colours, and what a legend counts."""

    epochs: tuple[int, ...]
    points: MapPoints
    xy: np.ndarray  # float32 [N, 2]: variability, confidence (NaN: never seen)
    colours: dict[str, np.ndarray]  # uint8 [N, 3] per colouring
    counts: dict[str, list[tuple[str, str, int]]]  # per colouring: (name, colour, images)

    @property
    def nbytes(self) -> int:
        return self.points.nbytes + self.xy.nbytes + sum(c.nbytes for c in self.colours.values())


def data_map(run: Run, last: int | None = None) -> DataMap:
    """The training set's data map over the epochs up to ``last`` (default: all);
    LookupError (TrainStatsMissing) for a run without training statistics."""
    epochs = tuple(train_labels.epoch_range(run, None, last))

    def build() -> DataMap:
        d = train_labels.dynamics(run, None, last)
        xy = np.stack([d.variability, d.confidence], axis=1).astype(np.float32)
        drawn = np.ones(len(xy), bool)
        drawn[train_labels.threshold_rows(run)] = False  # trained with a fake label
        xy[~drawn] = np.nan
        band = band_codes(d)
        band_table = np.array([_rgb(BAND_COLOURS[b]) for b in BAND_NAMES], dtype=np.uint8)
        right = correctness_bin(d.correctness)
        right_table = np.array([_rgb(c) for c in CORRECTNESS_COLOURS], dtype=np.uint8)
        per_band = np.bincount(band[drawn], minlength=len(BAND_NAMES))
        seen = drawn & (d.epochs_seen > 0)
        per_right = np.bincount(right[seen], minlength=len(CORRECTNESS_COLOURS))
        counts = {
            "band": [
                (b, BAND_COLOURS[b], int(n)) for b, n in zip(BAND_NAMES, per_band, strict=True) if n
            ],
            "correctness": [
                (name, c, int(n))
                for name, c, n in zip(
                    CORRECTNESS_NAMES, CORRECTNESS_COLOURS, per_right, strict=True
                )
                if n
            ],
        }
        colours = {"band": band_table[band], "correctness": right_table[right]}
        return DataMap(epochs, map_points(xy, tree=False), xy, colours, counts)

    return run.memo(("data_map", epochs), build)


@dataclass(frozen=True)
class MapView:
    figure: dict[str, Any]
    state: str  # ready, missing
    message: str = ""
    x: Range = X_EXTENT
    y: Range = Y_EXTENT
    grid: HoverGrid | None = None
    seconds: float = 0.0
    drawn: int = 0
    epochs: tuple[int, ...] = ()


def map_view(
    run: Run,
    last: int | None,
    by: ColourBy,
    x: Range = X_EXTENT,
    y: Range = Y_EXTENT,
    size: tuple[int, int] = (PLOT_W, PLOT_H),
) -> MapView:
    """The figure of the visible range of the data map, or one saying what is missing."""
    t0 = time.perf_counter()
    try:
        dm = data_map(run, last)
    except LookupError as e:
        return MapView(waiting_spec(str(e), size), "missing", str(e))
    w, h = size
    rendered = render_map(dm.points, dm.colours[by], clamp_x(x), clamp_y(y), w, h)
    span = (
        f"epochs {dm.epochs[0]}-{dm.epochs[-1]}" if len(dm.epochs) > 1 else f"epoch {dm.epochs[0]}"
    )
    what = "region" if by == "band" else by
    title = f"{run.name}: data map of {len(dm.xy):,} training images over {span}, by {what}"
    fig, grid = map_spec(rendered, title, size)
    return MapView(
        fig, "ready", "", rendered.x, rendered.y, grid, time.perf_counter() - t0,
        rendered.drawn, dm.epochs,
    )  # fmt: skip


def nearest_image(
    run: Run, last: int | None, x: float, y: float, radius: tuple[float, float]
) -> int | None:
    """The training image nearest to (x, y), within ``radius`` (x and y: one hover cell's half
    sides, the axes' units differ), or None. Brute force: 1.28 M points in a few ms, and no
    KD-tree to build for the first view."""
    xy = data_map(run, last).xy
    rx, ry = max(radius[0], 1e-9), max(radius[1], 1e-9)
    d = ((xy[:, 0] - x) / rx) ** 2 + ((xy[:, 1] - y) / ry) ** 2
    if not len(d) or np.isnan(d).all():
        return None
    i = int(np.nanargmin(d))
    return i if d[i] <= 2.0 else None  # inside the cell's ellipse around its corners


def legend(run: Run, last: int | None, by: ColourBy) -> list[tuple[str, str, int]]:
    return data_map(run, last).counts[by]


@dataclass(frozen=True)
class ImageDetail:
    index: int
    path: str
    thumbnail: str | None
    label: str
    suggested: str
    numbers: dict[str, Any]  # aum, confidence, variability, correctness, forgetting
    history: dict[str, list]  # train_labels.history


def image_detail(
    run: Run, last: int | None, index: int, allowed: list[Path] | None = None
) -> ImageDetail:
    """A clicked training image: its thumbnail (from an allowed root only), given and
    suggested label, its dynamics and its statistics per epoch."""
    d = train_labels.dynamics(run, None, last)
    labels, paths = train_labels.train_index(run)
    sug = int(d.suggested[index])
    numbers = {
        "aum": float(d.aum[index]),
        "confidence": float(d.confidence[index]),
        "variability": float(d.variability[index]),
        "correctness": float(d.correctness[index]),
        "forgetting": int(d.forgetting[index]),
    }
    return ImageDetail(
        index=index,
        path=paths[index],
        thumbnail=file_thumbnail(thumbnail_source(run, allowed).root, paths[index]),
        label=run.names[int(labels[index])],
        suggested=run.names[sug] if sug >= 0 else "-",
        numbers=numbers,
        history=train_labels.history(run, index, None, last),
    )
