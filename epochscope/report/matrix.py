"""The top-5 confusion matrix as pictures: a small pyramid of PNG levels of the whole matrix in
the run's display order (level ``b`` draws blocks of b x b cells by their largest share, so a
zoomed-out view loses no cell), the cells themselves for the page's read-out, the evolution
frames over epochs and the difference from a compared run. numpy here, Pillow in png.py."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from epochscope.report.colours import difference_colours, share_colours
from epochscope.report.png import png_uri

if TYPE_CHECKING:
    from epochscope.run import Run

#: a matrix with more classes is left out (a dense float32 [C, C] at 4,096 is 64 MB)
MAX_CLASSES = 4096
#: the coarsest pyramid level is at most this many pixels a side
OVERVIEW_PX = 256
#: evolution frames are at most this many pixels a side (lite: half)
FRAME_PX = 250
ORDER = "wordnet"  # the run's display order: its hierarchy, else clustered


@dataclass(frozen=True)
class Pyramid:
    """What the page's matrix viewer draws: levels (block size, PNG data URI), finest first,
    and the cells for its read-out (None in a lite report)."""

    n: int
    levels: list[tuple[int, str]]
    cells: dict[str, str] | None

    def config(self, kind: str) -> dict[str, Any]:
        return {
            "n": self.n,
            "kind": kind,
            "levels": [{"b": b, "src": src} for b, src in self.levels],
            "cells": self.cells,
        }


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def slots(run: Run) -> np.ndarray:
    """The display slot of each class index."""
    return run.positions(ORDER)


def share_matrix(run: Run, epoch: int) -> np.ndarray:
    """float32 [C, C] of top-5 row shares (count / images of the true class), display order."""
    conf = run.confusion(epoch, "top5")
    pos = slots(run)
    images = np.maximum(conf.images, 1)
    m = np.zeros((run.num_classes, run.num_classes), np.float32)
    m[pos[conf.rows], pos[conf.cols]] = conf.counts / images[conf.rows]
    return m


def pool(m: np.ndarray, b: int, signed: bool = False) -> np.ndarray:
    """Blocks of b x b cells as one pixel: the largest value (``signed``: the value of largest
    magnitude, sign kept)."""
    if b == 1:
        return m
    n = -(-m.shape[0] // b) * b
    padded = np.zeros((n, n), m.dtype)
    padded[: m.shape[0], : m.shape[1]] = m
    blocks = padded.reshape(n // b, b, n // b, b).transpose(0, 2, 1, 3).reshape(n // b, n // b, -1)
    if not signed:
        return blocks.max(axis=2)
    pick = np.abs(blocks).argmax(axis=2)
    return np.take_along_axis(blocks, pick[..., None], axis=2)[..., 0]


def blocks(n: int, overview: int = OVERVIEW_PX) -> list[int]:
    """Block sizes of the pyramid: 1, 2, 4, ... until the matrix fits ``overview`` pixels."""
    out = [1]
    while -(-n // out[-1]) > overview:
        out.append(out[-1] * 2)
    return out


def confusion_pyramid(run: Run, epoch: int, with_cells: bool = True) -> Pyramid:
    """The epoch's top-5 matrix as a pyramid, with its cells (display slots) for the read-out."""
    m = share_matrix(run, epoch)
    levels = [(b, png_uri(share_colours(pool(m, b)))) for b in blocks(run.num_classes)]
    cells = None
    if with_cells:
        conf = run.confusion(epoch, "top5")
        pos = slots(run)
        keys = pos[conf.rows].astype(np.int64) * run.num_classes + pos[conf.cols]
        order = np.argsort(keys, kind="stable")
        images = np.zeros(run.num_classes, np.int64)
        images[pos] = conf.images
        cells = {
            "keys": _b64(keys[order], "<i4"),
            "values": _b64(conf.counts[order], "<i4"),
            "images": _b64(images, "<i4"),
        }
    return Pyramid(run.num_classes, levels, cells)


def evolution_frames(run: Run, epochs: list[int], side: int = FRAME_PX) -> list[str]:
    """One PNG data URI per epoch of the top-5 matrix, at most ``side`` pixels a side."""
    b = max(1, -(-run.num_classes // side))
    return [png_uri(share_colours(pool(share_matrix(run, e), b))) for e in epochs]


def difference_pyramid(
    run: Run, epoch: int, other: Run, other_epoch: int, with_cells: bool = True
) -> tuple[Pyramid, float]:
    """(pyramid of this run's share minus the compared run's per cell, the colour scale)."""
    rows, cols, diff = run.difference(epoch, other, other_epoch, "top5")
    pos = slots(run)
    n = run.num_classes
    m = np.zeros((n, n), np.float32)
    m[pos[rows], pos[cols]] = diff
    scale = float(np.percentile(np.abs(diff), 99)) if len(diff) else 1.0
    scale = max(scale, 1e-3)
    levels = [(b, png_uri(difference_colours(pool(m, b, signed=True), scale))) for b in blocks(n)]
    cells = None
    if with_cells:
        keys = pos[rows].astype(np.int64) * n + pos[cols]
        order = np.argsort(keys, kind="stable")
        cells = {"keys": _b64(keys[order], "<i4"), "values": _b64(diff[order], "<f4")}
    return Pyramid(n, levels, cells), scale
