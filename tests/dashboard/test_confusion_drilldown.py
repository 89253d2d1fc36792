"""Drill-down: the rows of a cell, thumbnails only from inside the data root, top pairs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dashboard.confusion.drilldown import pair_rows
from epochscope.analysis.confusion import confusion, most_confused
from epochscope.images import safe_image_path, thumbnail_uri


def test_pair_rows_by_rank_then_row() -> None:
    labels = np.array([1, 1, 0, 1, 1])
    top5 = np.array(
        [
            [2, 1, 0, 3, 4],  # 2 first
            [1, 0, 3, 4, 2],  # 2 last
            [2, 0, 1, 3, 4],  # true 0: not this cell
            [1, 2, 0, 3, 4],  # 2 second
            [1, 0, 3, 4, 5],  # no 2
        ]
    )
    assert pair_rows(labels, top5, 1, 2, "top5").tolist() == [0, 3, 1]
    assert pair_rows(labels, top5, 1, 2, "top1").tolist() == [0]
    assert pair_rows(labels, top5, 1, 2, "top5", limit=2).tolist() == [0, 3]
    assert pair_rows(labels, top5, 1, 1, "top1").tolist() == [1, 3, 4]  # the diagonal


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "val" / "cls").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(root / "val" / "cls" / "a.png")
    (tmp_path / "secret.png").write_bytes((root / "val" / "cls" / "a.png").read_bytes())
    os.symlink(tmp_path / "secret.png", root / "val" / "escape.png")
    os.symlink(root / "val" / "cls" / "a.png", root / "val" / "inside.png")
    return root


def test_safe_image_path_allows_files_inside_the_root(data_root: Path) -> None:
    assert safe_image_path(str(data_root), "val/cls/a.png") == data_root / "val/cls/a.png"
    # a symlink that stays inside the root is fine
    assert safe_image_path(str(data_root), "val/inside.png") == data_root / "val/cls/a.png"


@pytest.mark.parametrize(
    "rel",
    [
        "../secret.png",  # climbs out
        "val/../../secret.png",
        "/etc/passwd",  # absolute
        "val/escape.png",  # a symlink pointing outside
        "val\\cls\\a.png",  # backslashes are not our separator
        "val/cls/a.png\x00.jpg",
        "val/cls",  # a folder, not a file
        "val/cls/missing.png",
        "",
        "~/secret.png",
    ],
)
def test_safe_image_path_refuses_escapes(data_root: Path, rel: str) -> None:
    assert safe_image_path(str(data_root), rel) is None


def test_safe_image_path_needs_an_absolute_existing_root(data_root: Path) -> None:
    assert safe_image_path(None, "val/cls/a.png") is None
    assert safe_image_path("relative/data", "val/cls/a.png") is None
    assert safe_image_path(str(data_root / "nope"), "val/cls/a.png") is None


def test_thumbnail_is_a_small_jpeg_or_none(data_root: Path, tmp_path: Path) -> None:
    uri = thumbnail_uri(data_root / "val/cls/a.png", size=96)
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert thumbnail_uri(broken) is None
    assert thumbnail_uri(None) is None


def test_most_confused_pairs_skip_the_diagonal_and_filter_by_band() -> None:
    labels = np.array([0, 0, 0, 1, 2])
    top5 = np.array([[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [2, 0, 0, 0, 0], [2, 1, 1, 1, 1],
                     [2, 2, 2, 2, 2]])  # fmt: skip
    conf = confusion(labels, top5, 3, "top1")
    pairs = most_confused(conf)
    assert [(p.true, p.pred, p.count) for p in pairs] == [(0, 1, 2), (0, 2, 1), (1, 2, 1)]
    assert pairs[0].share == pytest.approx(2 / 3)
    bands = ["dog", "dog", "vehicle"]
    assert [(p.true, p.pred) for p in most_confused(conf, bands, "vehicle")] == [(0, 2), (1, 2)]
    assert len(most_confused(conf, limit=1)) == 1
    # a cut through tied counts keeps the first by true, then predicted class, every time
    assert [(p.true, p.pred) for p in most_confused(conf, limit=2)] == [(0, 1), (0, 2)]


def test_thumbnails_open_photo_formats_only(tmp_path: Path) -> None:
    """An EPS (Ghostscript), ICO or PSD named .png is not opened, nor a pixel bomb."""
    for name, fmt in (("x.ico", "ICO"), ("x.tiff", "TIFF"), ("x.eps", "EPS")):
        path = tmp_path / (name + ".png")
        Image.new("RGB", (16, 16), (9, 9, 9)).save(path, format=fmt)
        assert thumbnail_uri(path) is None, fmt
    ok = tmp_path / "ok.webp"
    Image.new("RGB", (16, 16), (9, 9, 9)).save(ok, format="WEBP")
    assert thumbnail_uri(ok)
