"""The training set's label errors in a real browser (gunicorn + Debian Chromium), on copies of
the real tiny training run (the trainer recorded its training statistics) and of it as a run
from before them (train_stats/ and train_index.tsv removed): the data map draws every training
image, a zoom re-renders exactly the range, a click opens an image and its history over the
epochs (and a copied link opens it again); the labels page's training tab lists thumbnails with
given -> suggested and exports every row as CSV; the old run says what is missing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import train_labels
from epochscope.train_labels import TRAIN_STATS_MISSING
from tests.support import points_view_js, to_page_js
from tests.support import wait_for as _wait
from tests.waits import idle_ms

pytestmark = pytest.mark.browser

STATE_JS = points_view_js("data-map-graph")
TO_PAGE_JS = to_page_js("data-map-graph")
HISTORY_JS = """
() => {
    const gd = document.querySelector('#data-map-history .js-plotly-plot');
    return gd && gd.data && gd.data.length ? gd.data.map(t => [t.meta, t.x, t.y]) : null;
}
"""


@pytest.fixture
def stats_runs(tiny_run: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    ignore = shutil.ignore_patterns("checkpoints")
    shutil.copytree(tiny_run, runs / "tiny", ignore=ignore)
    shutil.copytree(tiny_run, runs / "old", ignore=ignore)
    shutil.rmtree(runs / "old" / "train_stats")
    (runs / "old" / "train_index.tsv").unlink()
    return runs


def _server(dashboard_server, runs: Path) -> str:
    data_root = json.loads((runs / "tiny" / "run.json").read_text())["data"]["root"]
    return dashboard_server(runs, env={"EPOCHSCOPE_DATA_ROOTS": data_root})


def test_the_data_map_draws_zooms_and_opens_an_image_and_its_history(
    stats_runs: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    run = epochscope.open_run(stats_runs / "tiny")
    d = train_labels.dynamics(run)
    xy = np.stack([d.variability, d.confidence], axis=1)
    seen = int((d.epochs_seen > 0).sum())
    assert seen > 700  # the tiny run's 800 training images, all but a last partial batch
    base = _server(dashboard_server, stats_runs)
    page = browser_page
    page.goto(f"{base}/data-map?run=tiny")

    # every training image the epochs saw, drawn
    first = _wait(lambda: page.evaluate(STATE_JS), 60, "the data map image")
    assert first["meta"]["drawn"] == seen
    assert f"{len(d.aum):,} training images over epochs 1-3" in first["title"]
    page.wait_for_selector("#data-map-legend-list li")
    assert "hard" in page.locator("#data-map-legend-list").inner_text()
    page.screenshot(path=str(output_dir / "data-map.png"), full_page=True)

    # a zoom: a new image of exactly the narrower range, drawing the points inside it
    x, y = (0.0, 0.25), (0.0, 0.6)
    page.evaluate(
        """([x, y]) => Plotly.relayout(document.querySelector('#data-map-graph .js-plotly-plot'),
               {'xaxis.range': x, 'yaxis.range': y})""",
        [list(x), list(y)],
    )
    zoomed = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and s["src"] != first["src"] and s,
        30, "the re-rendered zoomed map",
    )  # fmt: skip
    assert zoomed["x"] == pytest.approx(list(x)) and zoomed["y"] == pytest.approx(list(y))
    inside = (xy[:, 0] >= x[0]) & (xy[:, 0] <= x[1]) & (xy[:, 1] >= y[0]) & (xy[:, 1] <= y[1])
    assert zoomed["meta"]["drawn"] == int(inside.sum()) > 0

    # a click on an image: the one nearest the clicked cell's centre, its card and history
    c = zoomed["cells"]
    step = np.array([c["dx"], c["dy"]])
    centres = np.round((xy - [c["x0"], c["y0"]]) / step) * step + [c["x0"], c["y0"]]
    off = np.abs((xy - centres) / step).max(axis=1)
    off[~inside] = np.inf
    aim = int(np.nanargmin(off))
    expected = int(np.nanargmin((((xy - centres[aim]) / step) ** 2).sum(axis=1)))
    px, py = page.evaluate(TO_PAGE_JS, [float(xy[aim, 0]), float(xy[aim, 1])])
    # a click is read from Plotly's last hover, which is throttled: the pointer comes to rest
    # inside the cell (cells are ~6 px) before the click
    page.mouse.move(px - 1, py - 1)
    page.mouse.move(px, py)
    page.wait_for_timeout(150)
    page.mouse.click(px, py)
    card = page.locator("#data-map-drill .data-map-image-card")
    card.wait_for(timeout=idle_ms(20))
    _wait(lambda: f"#{expected} " in card.inner_text(), 20, f"the card of image #{expected}")
    labels, paths = train_labels.train_index(run)
    assert run.names[int(labels[expected])] in card.inner_text()
    assert f"#{expected} {paths[expected]}" in card.inner_text()
    assert page.locator("#data-map-drill img[src^='data:image/']").count() == 1
    history = _wait(lambda: page.evaluate(HISTORY_JS), 20, "the image's history")
    truth = train_labels.history(run, expected)
    assert [t[0] for t in history] == ["p_label", "margin"]
    assert history[0][1] == [1, 2, 3]
    assert history[0][2] == pytest.approx(truth["p_label"])
    page.screenshot(path=str(output_dir / "data-map-image.png"), full_page=True)

    # the address holds the zoom and the image: a new page at it opens the same card
    link = _wait(lambda: f"image={expected}" in (h := page.evaluate("location.href")) and h,
                 20, "the image in the URL")  # fmt: skip
    other = page.context.new_page()
    other.goto(link)
    again = other.locator("#data-map-drill .data-map-image-card")
    again.wait_for(timeout=idle_ms(30))
    assert f"#{expected} " in again.inner_text()
    state = _wait(lambda: other.evaluate(STATE_JS), 30, "the linked map")
    assert state["x"] == pytest.approx(list(x)) and state["meta"]["drawn"] == int(inside.sum())
    other.close()

    # a run from before the statistics: the map says what is missing
    page.goto(f"{base}/data-map?run=old")
    _wait(lambda: TRAIN_STATS_MISSING[:40] in page.locator("#data-map-graph").inner_text(), 30,
          "the old run's message")  # fmt: skip


def test_the_training_tab_lists_thumbnails_and_exports_every_row(
    stats_runs: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    run = epochscope.open_run(stats_runs / "tiny")
    expected = run.training_label_issues()
    base = _server(dashboard_server, stats_runs)
    page = browser_page
    page.goto(f"{base}/labels?run=tiny")
    page.wait_for_selector("#labels-issues .labels-image")
    page.click("#labels-split input[value='train']")
    _wait(lambda: "training images" in page.locator("#labels-summary").inner_text(), 30,
          "the training ranking")  # fmt: skip
    cards = page.locator("#labels-issues .labels-image")
    _wait(lambda: cards.count() == 24, 20, "24 cards")
    assert page.locator("#labels-issues img[src^='data:image/']").count() == 24
    assert "Likely mislabeled training images" in page.locator("#labels-title").inner_text()
    assert not page.locator("#labels-method").is_visible()  # one method for the training set
    given = page.locator("#labels-issues .labels-given").all_inner_texts()
    suggested = page.locator("#labels-issues .labels-suggested").all_inner_texts()
    assert given == expected["label_name"][:24].tolist()
    assert suggested == expected["suggested_name"][:24].tolist()
    assert f"#{expected['index'][0]} " in cards.first.inner_text()
    assert "split=train" in page.evaluate("location.href")
    page.screenshot(path=str(output_dir / "labels-training.png"), full_page=True)

    with page.expect_download(timeout=idle_ms(30)) as download:
        page.click("#labels-export")
    assert download.value.suggested_filename == "tiny-epoch0003-train-label-issues.csv"
    with open(download.value.path(), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(train_labels.ISSUE_COLUMNS)
    assert len(rows) == 1 + len(expected) == 1 + 800
    assert [int(r[0]) for r in rows[1:]] == expected["index"].tolist()

    # the old run on the training tab: what is missing, no cards
    page.goto(f"{base}/labels?run=old&split=train")
    page.wait_for_selector("#labels-missing:has-text('training statistics')", timeout=idle_ms(30))
    assert TRAIN_STATS_MISSING in page.locator("#labels-missing").inner_text()
    assert page.locator("#labels-issues .labels-image").count() == 0
