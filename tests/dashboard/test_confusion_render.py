"""Rendering: PNG sizes, exact ranges, crisp one-pixel-per-class views, colour scales, figure."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from dashboard.confusion.figure import (
    FIG_WIDTH,
    HOVER_CELLS,
    band_pixels,
    band_ticks,
    hover_grid,
    matrix_spec,
)
from dashboard.confusion.render import (
    PALETTE,
    _value_histogram,
    colour_indices,
    encode_image,
    encode_png,
    place,
    render,
    render_full_resolution,
    visible_axis,
)
from dashboard.confusion.view import clamp, next_view
from epochscope.analysis.bands import band_runs
from epochscope.analysis.confusion import confusion
from epochscope.analysis.ordering import index_order, positions


def _points(num_classes: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, 3000)
    top5 = rng.integers(0, num_classes, (3000, 5))
    top5[:, 0] = labels
    conf = confusion(labels, top5, num_classes, "top5")
    return conf, place(conf, positions(index_order(num_classes)))


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_full_view_has_the_requested_pixel_size() -> None:
    _, pts = _points(300)
    r = render(pts, (0, 300), (300, 0), 200, 150, "eq_hist", keep_agg=True)
    img = _png(r.image)
    assert img.size == (200, 150) and img.format == "PNG" and img.mode == "P"
    assert (r.x.lo, r.x.hi, r.y.lo, r.y.hi) == (0, 300, 0, 300)
    assert np.nansum(r.agg) == pytest.approx(3000 * 5)  # every guess lands in some pixel


def test_zoomed_view_is_one_pixel_per_class_over_whole_classes() -> None:
    conf, pts = _points()
    r = render(pts, (10.4, 20.2), (35.9, 30.5), 680, 680, "linear", keep_agg=True)
    # snapped to whole classes 10..21 x 30..36: the browser enlarges each pixel to a cell
    assert (r.x.lo, r.x.hi, r.y.lo, r.y.hi) == (10, 21, 30, 36)
    assert _png(r.image).size == (11, 6)
    dense = conf.dense()
    assert np.array_equal(np.nan_to_num(r.agg), dense[30:36, 10:21])  # row 0 = smallest slot


def test_render_follows_the_display_order() -> None:
    conf, _ = _points(20)
    order = np.arange(20)[::-1].copy()
    pts = place(conf, positions(order))
    r = render(pts, (0, 20), (0, 20), 680, 680, "linear", keep_agg=True)
    dense = conf.dense()
    assert np.array_equal(np.nan_to_num(r.agg), dense[order][:, order])


def test_visible_axis_clamps_and_chooses_resolution() -> None:
    assert visible_axis((-5, 2000), 1000, 500) == visible_axis((0, 1000), 1000, 500)
    a = visible_axis((100.5, 900.25), 1000, 500)
    assert (a.lo, a.hi, a.pixels, a.per_class) == (100.5, 900.25, 500, False)
    b = visible_axis((3.2, 7.1), 1000, 500)
    assert (b.lo, b.hi, b.pixels, b.per_class) == (3, 8, 5, True)


@pytest.mark.parametrize("scale", ["linear", "log", "eq_hist"])
def test_colour_scales_are_monotonic_and_leave_empty_cells_empty(scale: str) -> None:
    agg = np.array([[np.nan, 1.0, 2.0, 4.0, 100.0, 0.0]])
    idx, bar = colour_indices(agg, scale)  # type: ignore[arg-type]
    assert idx[0, 0] == 0 and idx[0, 5] == 0  # empty pixels use the transparent entry
    assert list(idx[0, 1:5]) == sorted(idx[0, 1:5]) and idx[0, 1] == 1 and idx[0, 4] == 255
    assert bar.values[0] == 1.0 and bar.values[-1] == pytest.approx(100.0)
    assert bar.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    if scale == "log":
        assert bar.values[2] == pytest.approx(10.0)  # the geometric middle
    if scale == "linear":
        assert bar.values[2] == pytest.approx(50.5)


def test_unknown_scale_is_refused() -> None:
    with pytest.raises(ValueError):
        colour_indices(np.ones((2, 2)), "sqrt")  # type: ignore[arg-type]


def test_full_resolution_export_is_crisp_and_large_enough() -> None:
    conf, pts = _points(20)
    img = render_full_resolution(pts, (0, 20), (0, 20), min_size=400, scale="linear")
    assert img.size == (400, 400)  # 20 classes x 20 pixels each
    arr = np.asarray(img)
    # each class is a uniform 20 x 20 block
    assert (arr[:20, :20] == arr[0, 0]).all()
    empty = conf.dense() == 0
    if empty.any():
        r, c = np.argwhere(empty)[0]
        assert tuple(arr[r * 20, c * 20]) == tuple(PALETTE[0])


def test_matrix_spec_is_a_valid_plotly_figure_with_image_bands_and_hover_grid() -> None:
    _, pts = _points(1000)
    r = render(pts, (0, 1000), (0, 1000), 680, 680)
    names = ["dog"] * 400 + ["cat"] * 100 + ["vehicle"] * 500
    bands = band_runs(names, np.arange(1000))
    spec, grid = matrix_spec(r, 1000, (0, 1000), (1000, 0), bands, "title")
    fig = go.Figure(spec)  # validates: a typo in the hand-written dict fails here
    assert fig.layout.width == FIG_WIDTH
    assert list(fig.layout.yaxis.range) == [1000, 0]  # true class 0 at the top
    image = fig.layout.images[0]
    assert image.source.startswith("data:image/png;base64,")
    assert _png(base64.b64decode(image.source.split(",")[1])).size == (680, 680)
    assert (image.x, image.y, image.sizex, image.sizey) == (0, 0, 1000, 1000)
    # band names as tick labels on both axes, strips as two more images
    assert list(fig.layout.xaxis.ticktext) == ["dog", "cat", "vehicle"]
    assert list(fig.layout.yaxis.tickvals) == [200, 450, 750]
    assert len(fig.layout.images) == 3
    top = _png(base64.b64decode(fig.layout.images[1].source.split(",")[1]))
    assert top.size == (680, 1)
    left = _png(base64.b64decode(fig.layout.images[2].source.split(",")[1]))
    assert left.size == (1, 680)
    assert grid.nx <= HOVER_CELLS and grid.dx == 10
    assert spec["data"][0]["z"]["shape"] == f"{grid.ny}, {grid.nx}"


def test_band_strip_pixels_follow_the_visible_range() -> None:
    bands = band_runs(["dog"] * 4 + ["cat"] * 4, np.arange(8))
    px = band_pixels(bands, 2, 6, pixels=8)  # slots 2-5: dog, dog, cat, cat
    assert (px[:4] == px[0]).all() and (px[4:] == px[4]).all() and (px[0] != px[4]).any()
    assert (px[:, 3] == 255).all()
    # unknown classes leave the strip transparent
    assert (band_pixels(band_runs(["", "dog"], np.arange(2)), 0, 2, 4)[:2, 3] == 0).all()
    ticks = band_ticks(bands, 2, 6, min_px=400)  # 2 slots x 170 px: too narrow to be named
    assert ticks["ticktext"] == [] and not ticks["showticklabels"]


def test_hover_grid_cells_map_back_to_classes() -> None:
    g = hover_grid((10.3, 19.7), (0, 1000), 1000)
    assert (g.x0, g.dx, g.nx) == (10, 1, 10)
    assert g.cell(15.5, 505.0) == ((15, 16), (500, 510))  # 10 classes per cell vertically
    # points that are no centre of this grid come from an older figure: ignored
    assert g.cell(15.5, 505.5) is None and g.cell(15.0, 505.0) is None
    assert g.cell(25.5, 505.0) is None  # beyond the visible range


def test_next_view_zoom_pan_reset_and_context() -> None:
    ctx = ["run", "wordnet", 100]
    assert next_view(None, None, 100, ctx, False) == ((0, 100), (0, 100))
    prev = {"context": ctx, "x": [0, 100], "y": [0, 100]}
    zoom = {
        "xaxis.range[0]": 10.5,
        "xaxis.range[1]": 20.5,
        "yaxis.range[0]": 40,
        "yaxis.range[1]": 30,
    }
    assert next_view(zoom, prev, 100, ctx, True) == ((10.5, 20.5), (30, 40))
    # only x moved: y stays
    prev2 = {"context": ctx, "x": [10.5, 20.5], "y": [30, 40]}
    assert next_view({"xaxis.range": [0, 5]}, prev2, 100, ctx, True) == ((0, 5), (30, 40))
    assert next_view({"xaxis.autorange": True, "yaxis.autorange": True}, prev2, 100, ctx, True) == (
        (0, 100), (0, 100)
    )  # fmt: skip
    # an epoch change keeps the zoom; another order starts over
    assert next_view(zoom, prev2, 100, ctx, False) == ((10.5, 20.5), (30, 40))
    assert next_view(None, prev2, 100, ["run", "index", 100], False) == ((0, 100), (0, 100))
    # panned past the edge: moved back in, not shrunk; too deep a zoom widened
    assert clamp((-5, 5), 100) == (0, 10) and clamp((95, 105), 100) == (90, 100)
    assert clamp((50, 50.1), 100) == pytest.approx((49.05, 51.05))


@pytest.mark.parametrize("colours", [1, 2, 3, 12, 17, 200])
def test_encoded_png_keeps_every_colour_and_transparency(colours: int) -> None:
    rng = np.random.default_rng(colours)
    used = rng.choice(np.arange(1, 256), colours, replace=False)
    idx = np.where(rng.random((30, 40)) < 0.3, 0, rng.choice(used, (30, 40))).astype(np.uint8)
    img = _png(encode_png(idx))
    rgba = np.asarray(img.convert("RGBA"))
    filled = idx > 0
    assert (rgba[filled][:, :3] == PALETTE[idx[filled]]).all()
    assert (rgba[filled][:, 3] == 255).all() and (rgba[~filled][:, 3] == 0).all()
    if colours <= 15:  # packed below 8 bits a pixel
        assert img.info.get("transparency") == 0


def test_large_noisy_views_may_use_webp_losslessly() -> None:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 256, (500, 500)).astype(np.uint8)  # incompressible noise
    data, mime = encode_image(idx)
    img = Image.open(io.BytesIO(data))
    assert mime == f"image/{img.format.lower()}"
    rgba = np.asarray(img.convert("RGBA"))
    assert (rgba[idx > 0][:, :3] == PALETTE[idx[idx > 0]]).all()
    _, small_mime = encode_image(np.zeros((10, 10), dtype=np.uint8))
    assert small_mime == "image/png"


@pytest.mark.parametrize("values", [[3.0, 1.0, 3.0, 7.0, 1.0, 3.0], [0.5, 2.25, 0.5, 9.0]])
def test_value_histogram_matches_numpy_unique(values: list[float]) -> None:
    arr = np.array(values)
    got = _value_histogram(arr)
    want = np.unique(arr, return_inverse=True, return_counts=True)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
