"""The confusion explorer in a real browser: gunicorn serving the app, Chromium via Playwright,
on the real tiny training run (20 classes, 3 epochs)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epochscope.analysis.confusion import confusion
from epochscope.analysis.ordering import wordnet_order
from epochscope.reader import load_predictions, read_classes, read_val_index
from tests.support import TO_PAGE_JS
from tests.support import wait_for as _wait
from tests.waits import idle_ms

pytestmark = pytest.mark.browser

GRAPH = "#confusion-graph .js-plotly-plot"

STATE_JS = """
() => {
    const gd = document.querySelector('#confusion-graph .js-plotly-plot');
    if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) return null;
    const im = gd.layout.images[0];
    return {x: gd.layout.xaxis.range, y: gd.layout.yaxis.range, src: im.source,
            ix: im.x, iy: im.y, sx: im.sizex, sy: im.sizey, title: gd.layout.title.text};
}
"""


def _png_size(data_uri: str) -> tuple[int, int]:
    raw = base64.b64decode(data_uri.split(",", 1)[1])
    return Image.open(io.BytesIO(raw)).size


def test_confusion_page_zoom_hover_click_and_epochs(
    tiny_run: Path, tiny_site: str, browser_page, output_dir: Path
) -> None:
    classes = read_classes(tiny_run)
    names = [n for _, _, n in classes]
    labels, _ = read_val_index(tiny_run)
    order = wordnet_order([w for _, w, _ in classes])
    top5, _ = load_predictions(tiny_run, 3)
    diag = confusion(labels, top5, len(classes), "top5").diagonal()
    # the diagonal cell with the most images, at its WordNet display slot
    best = int(np.argmax(diag))
    slot = int(np.flatnonzero(order == best)[0])
    assert diag[best] > 0

    base = tiny_site  # the demo data, where the run's images are, is an allowed root
    page = browser_page
    page.goto(f"{base}/confusion?run={tiny_run.name}")
    page.wait_for_selector(GRAPH)

    # 1. the matrix image: the whole 20 x 20 matrix, one pixel per class, epoch 3
    first = _wait(lambda: page.evaluate(STATE_JS), 60, "the matrix image")
    assert first["src"].startswith("data:image/png;base64,")
    assert sorted(first["x"]) == [0, 20] and sorted(first["y"]) == [0, 20]
    assert _png_size(first["src"]) == (20, 20)
    assert "epoch 3" in first["title"]
    page.wait_for_selector("#confusion-pairs td")  # the most-confused-pairs table is filled
    page.screenshot(path=str(output_dir / "confusion-full.png"), full_page=True)

    # 2. a zoom: the server sends a new image of exactly the narrower range
    lo = max(0, min(slot - 2, 14))
    hi = lo + 6
    page.evaluate(
        """([lo, hi]) => Plotly.relayout(document.querySelector('#confusion-graph .js-plotly-plot'),
               {'xaxis.range': [lo, hi], 'yaxis.range': [hi, lo]})""",
        [lo, hi],
    )
    zoomed = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and s["src"] != first["src"] and s["sx"] == 6 and s,
        30, "the re-rendered zoomed image",
    )  # fmt: skip
    assert (zoomed["ix"], zoomed["iy"], zoomed["sy"]) == (lo, lo, 6)
    assert _png_size(zoomed["src"]) == (6, 6)
    page.screenshot(path=str(output_dir / "confusion-zoomed.png"), full_page=True)

    # 3. hover over the diagonal cell: the tooltip names the class as true and predicted
    x, y = page.evaluate(TO_PAGE_JS, [slot + 0.5, slot + 0.5])
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    text = _wait(
        lambda: page.locator("#confusion-hover-text").all_inner_texts(), 20, "the hover tooltip"
    )[0]
    assert f"true: {names[best]}" in text and f"predicted: {names[best]}" in text
    assert f"count {diag[best]}" in text
    page.screenshot(path=str(output_dir / "confusion-hover.png"), full_page=True)

    # 4. click the cell: its validation images are listed with their top-5 and thumbnails
    page.mouse.click(x, y)
    page.wait_for_selector("#confusion-drill .confusion-image", timeout=idle_ms(20))
    head = page.locator("#confusion-drill-head").inner_text()
    assert head.count(names[best]) == 2
    cards = page.locator("#confusion-drill .confusion-image")
    assert cards.count() == min(int(diag[best]), 24)
    # the tiny run's data root is allowed (--data-root), so thumbnails are real images
    assert page.locator("#confusion-drill img[src^='data:image/jpeg']").count() == cards.count()
    page.screenshot(path=str(output_dir / "confusion-drill.png"), full_page=True)

    # 5. the slider moves to epoch 1: a new matrix, the zoom kept
    handle = page.locator("#confusion-epoch [role='slider']").first
    handle.focus()
    page.keyboard.press("Home")
    epoch1 = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and "epoch 1 " in s["title"] and s,
        30, "the epoch-1 matrix",
    )  # fmt: skip
    assert epoch1["src"] != zoomed["src"]
    assert sorted(epoch1["x"]) == [lo, hi]
    page.wait_for_selector("#confusion-epoch-label:has-text('epoch 1')")
    page.screenshot(path=str(output_dir / "confusion-epoch1.png"), full_page=True)

    # 6. exports: a PNG of this view, a GIF of all three epochs
    with page.expect_download(timeout=idle_ms(30)) as png_download:
        page.click("#confusion-export-png")
    png = Image.open(png_download.value.path())
    assert png.format == "PNG" and png.width >= 1000  # 6 classes, enlarged to full size
    with page.expect_download(timeout=idle_ms(60)) as gif_download:
        page.click("#confusion-export-gif")
    gif = Image.open(gif_download.value.path())
    assert gif.format == "GIF" and gif.n_frames == 3


def _busiest_mistake(tiny_run: Path, epoch: int, lo: int, hi: int) -> tuple[int, int, int]:
    """(true, predicted, count) of the top-5 mistake with most images at ``epoch`` whose cell
    lies in display slots [lo, hi) on both axes (the hierarchy order)."""
    classes = read_classes(tiny_run)
    labels, _ = read_val_index(tiny_run)
    top5, _ = load_predictions(tiny_run, epoch)
    order = wordnet_order([w for _, w, _ in classes])
    slot = np.argsort(order)  # slot[class]: where the class is drawn
    conf = confusion(labels, top5, len(classes), "top5")
    inside = [
        (int(n), int(t), int(p))
        for t, p, n in zip(conf.rows, conf.cols, conf.counts, strict=True)
        if t != p and lo <= slot[t] < hi and lo <= slot[p] < hi
    ]
    count, true, pred = max(inside)
    return true, pred, count


def test_a_copied_link_reproduces_the_zoom_selection_cell_and_epoch(
    tiny_run: Path, dashboard_server, browser_page
) -> None:
    """Zoom the matrix, select a class, choose an epoch, click a cell: the address bar then
    holds the view, and opening it in a new page shows the same range, selection, epoch and the
    cell's drill-down; back undoes the cell, then the zoom."""
    names = [n for _, _, n in read_classes(tiny_run)]
    order = wordnet_order([w for _, w, _ in read_classes(tiny_run)])
    slot = np.argsort(order)
    true, pred, count = _busiest_mistake(tiny_run, 1, 4, 12)
    cell_head = f"{names[true]} → {names[pred]} · epoch 1"

    def href(p) -> str:  # the address bar (page.url lags behind history.replaceState)
        return p.evaluate("window.location.href")

    base = dashboard_server(tiny_run.parent)
    page = browser_page
    page.goto(f"{base}/confusion?run={tiny_run.name}")
    page.wait_for_selector(GRAPH)
    first = _wait(lambda: page.evaluate(STATE_JS), 60, "the matrix image")
    assert "epoch 3" in first["title"]

    # select a class by name (which zooms to it), then zoom elsewhere, then epoch 1
    chosen = names[7]
    page.fill("#confusion-search", chosen)
    page.press("#confusion-search", "Enter")
    page.wait_for_selector(f"#confusion-drill-head:has-text('{chosen}')", timeout=30_000)
    page.evaluate(
        """() => Plotly.relayout(document.querySelector('#confusion-graph .js-plotly-plot'),
               {'xaxis.range': [4, 12], 'yaxis.range': [12, 4]})"""
    )
    _wait(lambda: (s := page.evaluate(STATE_JS)) and s["sx"] == 8 and s, 30, "the zoomed image")
    _wait(lambda: "x=4%2C12" in href(page), 20, "the zoom in the URL")
    handle = page.locator("#confusion-epoch [role='slider']").first
    handle.focus()
    page.keyboard.press("Home")
    shown = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and "epoch 1 " in s["title"] and s,
        30, "the epoch-1 matrix",
    )  # fmt: skip
    _wait(lambda: "epoch=1" in href(page), 20, "the epoch in the URL")
    # click one cell of the zoomed matrix: its images are listed, and the cell joins the link
    x, y = page.evaluate(TO_PAGE_JS, [slot[pred] + 0.5, slot[true] + 0.5])
    page.mouse.click(x, y)
    page.locator("#confusion-drill-head", has_text=cell_head).wait_for(timeout=30_000)
    cards = page.locator("#confusion-drill .confusion-image").count()
    assert cards == min(count, 24)
    link = _wait(lambda: "cell=" in href(page) and href(page), 20, "the cell in the URL")
    assert f"cell={true}%2C{pred}" in link
    assert "epoch=1" in link and "cls=7" in link and "x=4%2C12" in link and "y=4%2C12" in link
    # the shell's Report link downloads the run at the epoch shown, not the newest
    with page.expect_download(timeout=idle_ms(60)) as download:
        page.click("#shell-report")
    assert download.value.suggested_filename == f"{tiny_run.name}-epoch-1.html"
    report = Path(download.value.path()).read_text()
    assert "epoch 1" in report and "<script src=" not in report

    # the copied link in a new page: the same range, selection and epoch
    other = page.context.new_page()
    other.goto(link)
    other.wait_for_selector(GRAPH)
    again = _wait(
        lambda: (s := other.evaluate(STATE_JS)) and "epoch 1 " in s["title"] and s,
        60, "the linked view",
    )  # fmt: skip
    assert sorted(again["x"]) == sorted(shown["x"]) == [4, 12]
    assert sorted(again["y"]) == sorted(shown["y"]) == [4, 12]
    assert (again["ix"], again["sx"]) == (shown["ix"], shown["sx"])
    # the drill-down is the cell's (clicked after the class was chosen), at the same epoch
    other.locator("#confusion-drill-head", has_text=cell_head).wait_for(timeout=30_000)
    assert other.locator("#confusion-drill .confusion-image").count() == cards
    assert other.locator("#confusion-epoch-label").inner_text() == "epoch 1"
    assert "cell=" in href(other)  # the restored cell stays in its link
    other.close()

    # back: the cell undone, the zoom and the class kept (the class's images again)
    page.go_back()
    _wait(lambda: "cell=" not in href(page), 20, "the URL before the cell")
    assert "x=4%2C12" in href(page) and "cls=7" in href(page)
    page.wait_for_selector(f"#confusion-drill-head:has-text('{chosen}')", timeout=30_000)
    assert "→" not in page.locator("#confusion-drill-head").inner_text()

    # back again: the view before the zoom (the class search's own zoom), laid out from its URL
    page.go_back()
    _wait(lambda: "x=4%2C12" not in href(page), 20, "the URL before the zoom")
    assert "cls=7" in href(page)
    back = _wait(
        lambda: (s := page.evaluate(STATE_JS)) and sorted(s["x"]) != [4, 12] and s,
        60, "the view before the zoom",
    )  # fmt: skip
    assert sorted(back["x"])[1] - sorted(back["x"])[0] < 20  # still the class's zoom
