"""The embedding map in a real browser: gunicorn serving the app, Chromium via Playwright.

A 1,000-class run of 50,000 validation images (WordNet classes) with embeddings; its layouts
are put in the cache the way the computing worker leaves them (computing them is tested in
tests/epochscope/test_embedding_map.py, and end to end on a small run below), so that this
test is about drawing: every point, a zoom that re-renders the visible range, hover, click,
the epoch slider and its play button.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.synthetic_embeddings import write_embeddings
from bench.synthetic_runs import write_run
from epochscope import maps
from epochscope.analysis.embedding_map import orient
from epochscope.run import open_run
from tests.support import points_view_js, to_page_js
from tests.support import wait_for as _wait
from tests.waits import idle_ms

pytestmark = pytest.mark.browser

STATE_JS = points_view_js("map-graph")
TO_PAGE_JS = to_page_js("map-graph")


def _png(data_uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))


@pytest.fixture(scope="module")
def big_map(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, np.ndarray]]:
    """(runs dir, cache dir, layouts): 1,000 classes x 50 images, 2 epochs, laid out."""
    root = tmp_path_factory.mktemp("map")
    runs, cache = root / "runs", root / "cache"
    run_dir = write_run(runs / "wordnet-1000", num_classes=1000, per_class=50, epochs=2)
    write_embeddings(run_dir, dims=32)
    run = open_run(run_dir)
    layouts = {}
    for e in run.embedding_epochs:
        # the principal coordinates, oriented as the layout function leaves them: a stand-in
        # for UMAP's output with the same shape, range and file
        v = run.embeddings(e).vectors[:, :2].astype(np.float32)
        coords = orient(v, v)
        path = cache / run_dir.name / maps.layout_path(run_dir, e).name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, coords)
        layouts[e] = coords
    return runs, cache, layouts


def test_map_draws_all_points_of_a_1000_class_run_and_zooming_re_renders(
    big_map, dashboard_server, browser_page, output_dir: Path
) -> None:
    runs, cache, layouts = big_map
    run = open_run(runs / "wordnet-1000")
    n = len(run.labels)
    assert n == 50_000 and run.num_classes == 1000
    base = dashboard_server(runs, env={maps.CACHE_ENV: str(cache)})
    page = browser_page
    page.goto(f"{base}/map?run=wordnet-1000")

    # 1. every point drawn: the last epoch's map of all 50,000 images
    first = _wait(lambda: page.evaluate(STATE_JS), 90, "the map image")
    assert first["meta"]["drawn"] == n
    assert "epoch 2" in first["title"] and "50,000 images" in first["title"]
    img = _png(first["src"])
    assert img.size == tuple(first["meta"]["pixels"])
    assert (np.asarray(img)[..., 3] > 0).sum() > 5_000  # spread over the picture, not a dot
    page.wait_for_selector("#map-legend-list li")
    page.screenshot(path=str(output_dir / "map-full.png"), full_page=True)

    # 2. a zoom: a new image of exactly the narrower range, drawing the points inside it
    coords = layouts[2]
    x, y = (-0.3, 0.2), (-0.2, 0.3)
    page.evaluate(
        """([x, y]) => Plotly.relayout(document.querySelector('#map-graph .js-plotly-plot'),
               {'xaxis.range': x, 'yaxis.range': y})""",
        [list(x), list(y)],
    )
    zoomed = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and s["src"] != first["src"] and s,
        30, "the re-rendered zoomed map",
    )  # fmt: skip
    assert zoomed["x"] == pytest.approx(list(x)) and zoomed["y"] == pytest.approx(list(y))
    inside = (
        (coords[:, 0] >= x[0]) & (coords[:, 0] <= x[1])
        & (coords[:, 1] >= y[0]) & (coords[:, 1] <= y[1])
    )  # fmt: skip
    assert zoomed["meta"]["drawn"] == int(inside.sum()) < n
    page.screenshot(path=str(output_dir / "map-zoomed.png"), full_page=True)

    # 3. hover: the tooltip names the class of the image nearest the hovered cell's centre;
    # an image near the middle of its cell, so that the pixel under the mouse is in that cell
    c = zoomed["cells"]
    cell = np.round((coords - [c["x0"], c["y0"]]) / [c["dx"], c["dy"]])
    centres = cell * [c["dx"], c["dy"]] + [c["x0"], c["y0"]]
    off = np.abs((coords - centres) / [c["dx"], c["dy"]]).max(axis=1)
    row = int(np.flatnonzero(inside)[np.argmin(off[inside])])
    nearest = int(np.argmin(np.linalg.norm(coords - centres[row], axis=1)))
    name = run.names[int(run.labels[nearest])]
    px, py = page.evaluate(TO_PAGE_JS, [float(coords[row, 0]), float(coords[row, 1])])
    page.mouse.move(px - 3, py - 3)
    page.mouse.move(px, py)
    _wait(
        lambda: (t := page.locator("#map-hover-text").all_inner_texts())
        and name in t[0] and f"#{nearest}" in t[0],
        20, f"the hover tooltip naming {name} (image #{nearest})",
    )  # fmt: skip

    # 4. click: that image and its neighbours on the map, with their labels
    page.mouse.click(px, py)
    page.wait_for_selector("#map-drill .map-image", timeout=idle_ms(20))
    assert page.locator("#map-drill .map-image").count() == 12
    assert name in page.locator("#map-drill-head").inner_text()
    page.screenshot(path=str(output_dir / "map-drill.png"), full_page=True)

    # 5. the slider to epoch 1: its own map, the zoom kept
    page.locator("#map-epoch [role='slider']").first.focus()
    page.keyboard.press("Home")
    epoch1 = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and "epoch 1 " in s["title"] and s,
        30, "the epoch-1 map",
    )  # fmt: skip
    assert epoch1["x"] == pytest.approx(list(x))
    inside1 = (
        (layouts[1][:, 0] >= x[0]) & (layouts[1][:, 0] <= x[1])
        & (layouts[1][:, 1] >= y[0]) & (layouts[1][:, 1] <= y[1])
    )  # fmt: skip
    assert epoch1["meta"]["drawn"] == int(inside1.sum())

    # 6. colour by class; a double-click shows the whole map again
    page.click("#map-colour input[value='class']")
    page.dblclick("#map-graph .nsewdrag")
    whole = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and s["meta"]["drawn"] == n and s,
        30, "the whole map again",
    )  # fmt: skip
    assert "coloured by class" in whole["title"]

    # 7. play from epoch 1: each epoch in turn once its map is drawn, stopping at the last
    page.locator("#map-epoch [role='slider']").first.focus()
    page.keyboard.press("Home")
    _wait(lambda: "epoch 1 " in (page.evaluate(STATE_JS) or {}).get("title", ""), 30, "epoch 1")
    page.click("#map-play")
    _wait(lambda: page.inner_text("#map-play") == "Pause", 10, "the button to say Pause")
    last = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and "epoch 2 " in s["title"] and s,
        30, "play to reach epoch 2",
    )  # fmt: skip
    assert last["meta"]["drawn"] == n
    _wait(lambda: page.inner_text("#map-play") == "Play", 10, "play to stop at the last epoch")


@pytest.mark.slow  # the worker imports UMAP and numba compiles it (~40 s on 2 cores)
def test_a_map_not_computed_yet_is_computed_by_the_server_and_then_drawn(
    tmp_path: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    run_dir = write_run(runs / "fresh", num_classes=20, per_class=10, epochs=2)
    write_embeddings(run_dir)
    base = dashboard_server(runs, workers=2, env={maps.CACHE_ENV: str(cache)})
    page = browser_page
    page.goto(f"{base}/map?run=fresh")
    page.wait_for_selector("#map-info:has-text('Laying out')", timeout=idle_ms(60))
    done = _wait(lambda: page.evaluate(STATE_JS), 240, "the computed map")
    assert done["meta"]["drawn"] == 200
    assert len(list((cache / "fresh").glob("map-epoch-0002-*.npy"))) == 1
    assert not list(run_dir.rglob("map-*"))  # nothing written into the run
    # the training page shows the band silhouette over the epochs
    page.goto(f"{base}/?run=fresh")
    page.wait_for_selector("[id*='training-silhouette-graph'] .js-plotly-plot", timeout=idle_ms(60))
    page.screenshot(path=str(output_dir / "training-silhouette.png"), full_page=True)


def test_a_live_run_shows_its_newest_laid_out_epoch_until_the_next_is_ready(
    tmp_path: Path, dashboard_server, browser_page
) -> None:
    """Epoch 3 is being laid out by another worker (its lock held): /map opens on epoch 2, the
    newest laid out, with a note, and draws epoch 3 once its layout is there; ?epoch=1 opens
    epoch 1."""
    import fcntl
    import os
    import time

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    run_dir = write_run(runs / "live", num_classes=20, per_class=10, epochs=3)
    write_embeddings(run_dir, dims=16)
    run = open_run(run_dir)

    def layout_file(epoch: int) -> Path:
        path = cache / run_dir.name / maps.layout_path(run_dir, epoch).name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def coords(epoch: int) -> np.ndarray:
        v = run.embeddings(epoch).vectors[:, :2].astype(np.float32)
        return orient(v, v)

    for e in (1, 2):
        np.save(layout_file(e), coords(e))
    fd = os.open(maps._lock_path(layout_file(3)), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is computing epoch 3
    try:
        base = dashboard_server(runs, env={maps.CACHE_ENV: str(cache)})
        page = browser_page
        t0 = time.monotonic()
        page.goto(f"{base}/map?run=live")
        shown = _wait(lambda: (s := page.evaluate(STATE_JS)) and s, 60, "the map of epoch 2")
        seconds = time.monotonic() - t0
        assert "epoch 2" in shown["title"], shown["title"]
        note = page.locator("#map-info").inner_text()
        assert "Showing epoch 2" in note and "epoch 3" in note
        print(f"the newest laid-out epoch on screen {seconds:.1f} s after opening /map")
        assert seconds < 30  # the page's first load included; docs say "about a second"
        np.save(layout_file(3), coords(3))  # ... which the other worker finishes
    finally:
        os.close(fd)
    newer = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and "epoch 3" in s["title"] and s,
        60, "the map of epoch 3 once laid out",
    )  # fmt: skip
    assert newer["meta"]["drawn"] == len(run.labels)
    page.goto(f"{base}/map?run=live&epoch=1")
    _wait(
        lambda: (s := page.evaluate(STATE_JS)) and "epoch 1" in s["title"] and s,
        60, "the map of the epoch the link names",
    )  # fmt: skip
