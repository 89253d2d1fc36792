"""The map view without a browser: datashader draws every point of the visible range, the
states of a layout (missing, computing elsewhere, ready), what lies under the pointer, and the
silhouette chart."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from bench.synthetic_embeddings import write_embeddings
from bench.synthetic_runs import write_run
from dashboard.embedding_map import service
from dashboard.embedding_map.extent import EXTENT, clamp
from dashboard.embedding_map.jobs import LayoutJobs
from dashboard.kit import points
from dashboard.kit.bands import band_colour
from dashboard.kit.points import map_points, render_map
from dashboard.kit.silhouette_chart import silhouette_figure
from epochscope import maps
from epochscope.embeddings import EMBEDDINGS_MISSING
from epochscope.run import open_run


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    run = write_run(tmp_path / "runs" / "mapped", num_classes=20, per_class=10, epochs=2)
    write_embeddings(run)
    return run


def put_layout(run_dir: Path, epoch: int, coords: np.ndarray) -> None:
    """A layout in the cache as a computing process leaves it (the view only reads it)."""
    path = maps.layout_path(run_dir, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, coords.astype(np.float32))


def spread(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 2)).astype(np.float32)


def test_every_point_is_drawn_and_a_zoom_draws_exactly_the_visible_ones():
    xy = spread(20_000)
    pts = map_points(xy)
    colours = np.full((len(xy), 3), 200, np.uint8)
    whole = render_map(pts, colours, EXTENT, EXTENT, 300, 200)
    assert whole.drawn == len(xy)
    img = Image.open(io.BytesIO(whole.image))
    assert img.size == (300, 200) and img.mode == "RGBA"
    x, y = (-0.5, 0.1), (0.2, 0.9)
    zoomed = render_map(pts, colours, x, y, 300, 200)
    inside = (xy[:, 0] >= x[0]) & (xy[:, 0] <= x[1]) & (xy[:, 1] >= y[0]) & (xy[:, 1] <= y[1])
    assert zoomed.drawn == int(inside.sum()) < len(xy)
    assert Image.open(io.BytesIO(zoomed.image)).size == (300, 200)


def test_a_lone_point_has_its_colour_and_the_image_is_right_side_up():
    xy = np.array([[-0.9, 0.9], [0.9, -0.9]], np.float32)  # top left, bottom right
    colours = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    img = np.asarray(Image.open(io.BytesIO(render_map(map_points(xy), colours, EXTENT, EXTENT,
                                                      100, 100, spread=0).image)))  # fmt: skip
    filled = np.argwhere(img[..., 3] > 0)
    assert len(filled) == 2
    top = filled[filled[:, 0].argmin()]
    assert tuple(img[top[0], top[1], :3]) == (255, 0, 0) and top[1] < 50


def test_a_sparse_view_draws_each_point_as_a_disc_of_its_colour():
    """1,000 points in the map's pixels are discs (a real-photos-10 run's map); 50,000 are
    single pixels; where two discs overlap, the higher-ranked point's colour wins, as in a
    pixel both fall in."""
    assert points.spread_radius(50_000, 760, 620) == 0
    assert points.spread_radius(1_000, 760, 620) == points.MAX_SPREAD
    assert 0 < points.spread_radius(5_000, 760, 620) < points.MAX_SPREAD
    xy = np.array([[-0.9, 0.9], [0.9, -0.9]], np.float32)
    colours = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    img = np.asarray(Image.open(io.BytesIO(render_map(map_points(xy), colours, EXTENT, EXTENT,
                                                      100, 100).image)))  # fmt: skip
    red = (img[..., 3] > 0) & (img[..., 0] == 255)
    blue = (img[..., 3] > 0) & (img[..., 2] == 255)
    disc = sum(dx * dx + dy * dy <= 12 for dx in range(-3, 4) for dy in range(-3, 4))
    assert red.sum() == blue.sum() == disc  # a disc of radius 3 each, nothing else drawn
    assert (img[..., 3] > 0).sum() == 2 * disc
    assert np.argwhere(red)[:, 1].max() < 50 and np.argwhere(blue)[:, 1].min() > 50
    # two points in neighbouring pixels: one colour where they overlap, the winner's
    near = map_points(np.array([[0.0, 0.0], [0.05, 0.0]], np.float32))  # ~2 pixels apart
    img = np.asarray(Image.open(io.BytesIO(render_map(near, colours, EXTENT, EXTENT, 100, 100,
                                                      spread=3).image)))  # fmt: skip
    winner = int(near.by_rank[-1])
    both = img[img[..., 3] > 0][:, :3]
    assert disc < len(both) < 2 * disc  # the discs overlap
    assert (both == colours[winner]).all(axis=1).sum() == disc  # the winner's whole disc
    assert (both == colours[1 - winner]).all(axis=1).sum() == len(both) - disc


def test_clamp_keeps_the_view_inside_the_map():
    assert clamp((5.0, 6.0)) == pytest.approx((EXTENT[1] - 1.0, EXTENT[1]))
    assert clamp((0.2, 0.2))[1] - clamp((0.2, 0.2))[0] > 0
    assert clamp((-9.0, 9.0)) == EXTENT


def test_a_run_without_embeddings_says_so(tmp_path: Path):
    run = open_run(write_run(tmp_path / "runs" / "plain", num_classes=20, per_class=2, epochs=1))
    view = service.map_view(run, None, "band")
    assert view.state == "missing" and view.message == EMBEDDINGS_MISSING
    go.Figure(view.figure)


@contextlib.contextmanager
def computing_elsewhere(run_dir: Path, epoch: int) -> Iterator[None]:
    """Hold ``epoch``'s layout lock as another worker computing it would."""
    path = maps.layout_path(run_dir, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(maps._lock_path(path), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_computing_elsewhere_shows_computing_then_the_map(run_dir: Path):
    run = open_run(run_dir)
    jobs = LayoutJobs()
    with computing_elsewhere(run_dir, 2):
        view = service.map_view(run, 2, "band", jobs=jobs)
        assert view.state == "computing" and "epoch 2" in view.message
        assert len(jobs) == 1  # this worker's thread waits on the lock, computing nothing
        assert service.map_view(run, 2, "band", jobs=jobs).state == "computing"
        assert len(jobs) == 1
        coords = spread(len(run.labels))
        put_layout(run_dir, 2, coords)  # ... which the other worker finishes
    deadline = time.monotonic() + 30
    while service.map_view(run, 2, "band", jobs=jobs).state != "ready":
        assert time.monotonic() < deadline, "the waiting thread never read the finished layout"
        time.sleep(0.05)
    np.testing.assert_array_equal(run.map_layout(2), coords)  # read, not computed again
    view = service.map_view(run, 2, "band", jobs=jobs)
    assert view.drawn == len(run.labels)
    go.Figure(view.figure)  # a valid Plotly figure
    assert view.figure["layout"]["images"][0]["source"].startswith("data:image/png;base64,")


def test_hover_and_click_find_the_nearest_image(run_dir: Path):
    run = open_run(run_dir)
    coords = spread(len(run.labels), seed=3)
    put_layout(run_dir, 1, coords)
    row = 17
    x, y = coords[row]
    assert service.nearest_row(run, 1, float(x) + 1e-4, float(y), radius=0.01) == row
    assert service.nearest_row(run, 1, 5.0, 5.0, radius=0.01) is None  # nothing near
    d = service.describe_row(run, row)
    assert d["name"] == run.names[int(run.labels[row])] and d["band"]
    near = service.rows_near(run, 1, row, k=5)
    assert near[0] == row and len(near) == 5
    dist = np.linalg.norm(coords - coords[row], axis=1)
    assert set(near) == set(np.argsort(dist)[:5].tolist())
    cards = service.images(run, 1, near, allowed=[])
    assert [c.row for c in cards] == near and all(len(c.top5) == 5 for c in cards)


def test_colour_by_band_uses_the_bands_colours(run_dir: Path):
    run = open_run(run_dir)
    by_band = service.colours(run, "band")
    c = int(run.labels[0])
    hexed = "#{:02x}{:02x}{:02x}".format(*tuple(int(v) for v in by_band[0]))
    assert hexed == band_colour(run.bands[c])
    by_class = service.colours(run, "class")
    assert len({tuple(v) for v in by_class}) == run.num_classes
    assert sum(n for _, _, n in service.legend(run)) == len(run.labels)


def test_silhouette_chart():
    fig = silhouette_figure([1, 2, 3], [0.1, None, 0.4], "bands")
    assert list(fig.data[0].y) == [0.1, None, 0.4]
    assert "bands" in fig.layout.title.text


def test_a_run_of_few_classes_names_the_colour_of_each(tmp_path: Path):
    """Coloured by class (a run without bands, like real-photos-10's plain class names): the
    legend lists every class with the colour its images are drawn in; not at 1,000 classes."""
    few = open_run(write_run(tmp_path / "few", num_classes=10, per_class=3, epochs=1))
    legend = service.class_legend(few)
    assert [name for name, _, _ in legend] == few.names
    drawn = service.colours(few, "class")
    for row in (0, 7, 29):
        name, colour, _ = legend[int(few.labels[row])]
        assert colour == "#{:02x}{:02x}{:02x}".format(*(int(v) for v in drawn[row])), name
    assert sum(n for _, _, n in legend) == len(few.labels)
    many = open_run(write_run(tmp_path / "many", num_classes=100, per_class=1, epochs=1))
    assert service.class_legend(many) == []


def test_while_an_epoch_is_laid_out_the_newest_laid_out_one_is_shown(run_dir: Path):
    """A live run's new epoch: the map of the epoch before it, with a note, until it is ready."""
    run = open_run(run_dir)
    jobs = LayoutJobs()
    put_layout(run_dir, 1, spread(len(run.labels)))
    with computing_elsewhere(run_dir, 2):
        view = service.map_view(run, 2, "band", jobs=jobs)
        assert view.state == "previous" and view.epoch == 1
        assert "Showing epoch 1" in view.message and "epoch 2" in view.message
        assert view.drawn == len(run.labels) and view.grid is not None
        assert "epoch 1" in view.figure["layout"]["title"]["text"]
        put_layout(run_dir, 2, spread(len(run.labels), seed=1))
    deadline = time.monotonic() + 30
    while (view := service.map_view(run, 2, "band", jobs=jobs)).state != "ready":
        assert time.monotonic() < deadline, "the newer layout never replaced the older one"
        time.sleep(0.05)
    assert view.epoch == 2 and "epoch 2" in view.figure["layout"]["title"]["text"]
