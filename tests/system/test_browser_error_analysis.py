"""Error analysis in a real browser (gunicorn + Debian Chromium) on the real tiny training run:
the per-class table, the class search, hide-diagonal and row-normalised colours, the figure
following the viewport, and the difference of two runs or two epochs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from epochscope.analysis.per_class import class_stats
from epochscope.reader import load_predictions, read_classes, read_val_index
from tests.support import TO_PAGE_JS
from tests.support import wait_for as _wait

pytestmark = pytest.mark.browser

GRAPH = "#confusion-graph .js-plotly-plot"
STATE_JS = """
() => {
    const gd = document.querySelector('#confusion-graph .js-plotly-plot');
    if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) return null;
    return {x: gd.layout.xaxis.range, y: gd.layout.yaxis.range, src: gd.layout.images[0].source,
            title: gd.layout.title.text, width: gd.layout.width, height: gd.layout.height,
            shapes: (gd.layout.shapes || []).map(s => [s.name, s.x0, s.x1, s.y0, s.y1]),
            bar: gd.data[1].marker.colorbar.title.text};
}
"""


def _state(page, check=lambda s: True, timeout: float = 30, what: str = "the matrix"):
    return _wait(lambda: (s := page.evaluate(STATE_JS)) and check(s) and s, timeout, what)


def test_per_class_table_sorts_and_a_click_highlights_the_class(
    tiny_run: Path, tiny_site: str, browser_page, output_dir: Path
) -> None:
    names = [n for _, _, n in read_classes(tiny_run)]
    labels, _ = read_val_index(tiny_run)
    stats = class_stats(labels, load_predictions(tiny_run, 3)[0], len(names))
    worst = int(np.nanargmin(stats.top1 + np.arange(len(names)) * 1e-9))  # first of the lowest

    base = tiny_site
    page = browser_page
    page.goto(f"{base}/classes?run={tiny_run.name}&epoch=2")
    page.wait_for_selector("#confusion-classes td")
    first = _state(page, lambda s: "epoch 2 " in s["title"])
    assert first["shapes"] == []
    # ?epoch=2: the table is epoch 2's (its top-1 column holds epoch 2's numbers)
    page.locator("#confusion-epoch [role='slider']").first.focus()
    page.keyboard.press("End")
    _state(page, lambda s: "epoch 3 " in s["title"])

    # "Worst classes": sorted by top-1, lowest first
    page.click("#confusion-worst")
    cells = page.locator("#confusion-classes td[data-dash-column='top1']")
    shown = _wait(
        lambda: (v := [float(t) for t in cells.all_inner_texts()]) == sorted(v) and v,
        10, "the table sorted by top-1",
    )  # fmt: skip
    assert shown[0] == pytest.approx(100 * stats.top1[worst], abs=0.05)
    top_name = page.locator("#confusion-classes td[data-dash-column='name']").first.inner_text()
    assert stats.top1[names.index(top_name)] == stats.top1[worst]
    page.screenshot(path=str(output_dir / "classes-table.png"), full_page=True)

    # a click on its name: the row and column are outlined in the matrix, its images listed
    page.locator("#confusion-classes td[data-dash-column='name']").first.click()
    hl = _state(page, lambda s: len(s["shapes"]) == 2, what="the highlight")
    row, col = dict((s[0], s[1:]) for s in hl["shapes"])["row"], None
    col = next(s[1:] for s in hl["shapes"] if s[0] == "column")
    assert row[3] - row[2] == 1 and col[1] - col[0] == 1 and row[2] == col[0]
    page.wait_for_selector("#confusion-drill .confusion-image")
    assert top_name in page.locator("#confusion-drill-head").inner_text()
    assert (
        page.locator("#confusion-drill .confusion-image").count()
        == stats.support[names.index(top_name)]
    )
    page.screenshot(path=str(output_dir / "classes-selected.png"), full_page=True)

    # "Most improved": by change since the first epoch, largest first; filter by name
    page.click("#confusion-improved")
    since = page.locator("#confusion-classes td[data-dash-column='d_since']")
    _wait(
        lambda: (v := [float(t) for t in since.all_inner_texts()]) == sorted(v, reverse=True)
        and v,
        10, "the table sorted by change since epoch 1",
    )  # fmt: skip
    name = names[3]
    page.locator("#confusion-classes th[data-dash-column='name'] input[type='text']").fill(name)
    page.keyboard.press("Enter")
    _wait(
        lambda: name in page.locator("#confusion-classes td[data-dash-column='name']")
        .all_inner_texts()[0:1],
        10, "the name filter",
    )  # fmt: skip


def test_search_hide_diagonal_row_normalised_and_viewport(
    tiny_run: Path, tiny_site: str, browser_page, output_dir: Path
) -> None:
    classes = read_classes(tiny_run)
    base = tiny_site
    page = browser_page
    page.goto(f"{base}/confusion?run={tiny_run.name}")
    page.wait_for_selector(GRAPH)
    first = _state(page)
    assert first["bar"] == "count"

    # the figure follows the viewport: 1400 x 1000 -> 1920 x 1080
    page.set_viewport_size({"width": 1920, "height": 1080})
    wide = _state(page, lambda s: s["width"] > first["width"], what="a wider figure")
    assert wide["height"] >= first["height"]
    box = page.locator(GRAPH).bounding_box()
    assert box["width"] >= 0.6 * 1920  # fills the window beside the side panel
    assert box["x"] + box["width"] <= 1920 and box["height"] <= 1080
    page.screenshot(path=str(output_dir / "confusion-1920.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})
    back = _state(page, lambda s: s["width"] == first["width"], what="the narrower figure")

    # search by part of a name: zoom to its row and column, outline them
    _, wnid, name = classes[5]
    page.fill("#confusion-search", name[: max(4, len(name) - 2)].upper())
    page.keyboard.press("Enter")
    found = _state(page, lambda s: len(s["shapes"]) == 2, what="the zoom to the class")
    assert found["x"][1] - found["x"][0] == 10  # half of the tiny run's 20 classes
    assert name in page.locator("#confusion-search-result").inner_text()
    slot = next(s[1] for s in found["shapes"] if s[0] == "column")
    assert min(found["x"]) <= slot < max(found["x"])
    page.fill("#confusion-search", wnid)
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#confusion-search-result:has-text('{name}')")
    page.screenshot(path=str(output_dir / "confusion-search.png"))
    page.dblclick(GRAPH, position={"x": 400, "y": 400})  # the whole matrix again
    full = _state(page, lambda s: s["x"][1] - s["x"][0] == 20 and s["src"] != found["src"])

    # hide the diagonal: another image; row-normalised (the share of each class's mistakes):
    # another image and a share colour bar
    page.get_by_label("hide the diagonal").check()
    hidden = _state(page, lambda s: "diagonal hidden" in s["title"])
    assert hidden["src"] != full["src"]
    page.get_by_label("row-normalised").check()
    rows = _state(page, lambda s: "row-normalised" in s["title"])
    assert rows["src"] != hidden["src"] and rows["bar"] == "share of row"
    page.screenshot(path=str(output_dir / "confusion-hide-diagonal-row.png"))
    # the tooltip leads with the share, as the colours now do
    x, y = page.evaluate(TO_PAGE_JS, [1.5, 0.5])
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    text = _wait(lambda: page.locator("#confusion-hover-text").all_inner_texts(), 20, "tooltip")[0]
    assert "of the true class's mistakes" in text and "share " in text
    # and the pairs table says the same share
    page.wait_for_selector("#confusion-pairs th:has-text('% of row')")
    assert back["src"]


def test_difference_of_two_runs_and_refused_class_sets(
    tiny_run: Path, dashboard_server, browser_page, output_dir: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("a", "b"):
        shutil.copytree(tiny_run, runs / name, ignore=shutil.ignore_patterns("checkpoints"))
    # run b: epoch 3's predictions replaced by epoch 1's, so A - B at epoch 3 is the learning
    shutil.copy(runs / "b/predictions/epoch-0001.npz", runs / "b/predictions/epoch-0003.npz")
    other = runs / "other"
    other.mkdir()
    shutil.copytree(tiny_run, other, dirs_exist_ok=True, ignore=shutil.ignore_patterns("check*"))
    lines = (other / "classes.tsv").read_text().splitlines()
    lines[1] = lines[1].split("\t")[0] + "\tn99999999\tinvented"
    (other / "classes.tsv").write_text("\n".join(lines) + "\n")

    labels, _ = read_val_index(tiny_run)
    names = [n for _, _, n in read_classes(tiny_run)]
    top_a = load_predictions(tiny_run, 3)[0]
    top_b = load_predictions(tiny_run, 1)[0]
    hit_a, hit_b = top_a[:, 0] == labels, top_b[:, 0] == labels
    k = int(np.argmax(np.bincount(labels, hit_a) - np.bincount(labels, hit_b)))

    base = dashboard_server(runs)
    page = browser_page
    page.goto(f"{base}/confusion?run=a&compare=b&epoch=3&compare_epoch=3")
    diff = _state(page, lambda s: "minus b epoch 3" in s["title"], 60, "the difference view")
    assert diff["bar"] == "Δ share"
    page.screenshot(path=str(output_dir / "confusion-difference.png"), full_page=True)

    # the tooltip over a class's own cell names both counts and the change
    page.fill("#confusion-search", names[k])
    page.keyboard.press("Enter")
    zoomed = _state(page, lambda s: len(s["shapes"]) == 2, what="zoom to the class")
    slot = next(s[1] for s in zoomed["shapes"] if s[0] == "column")
    x, y = page.evaluate(TO_PAGE_JS, [slot + 0.5, slot + 0.5])
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    text = _wait(lambda: page.locator("#confusion-hover-text").all_inner_texts(), 20, "tooltip")[0]
    n = int(np.sum(labels == k))
    count_a = int(np.sum((labels == k)[:, None] & (top_a == k)))
    count_b = int(np.sum((labels == k)[:, None] & (top_b == k)))
    assert f"A (a epoch 3): count {count_a} of {n}" in text
    assert f"B (b epoch 3): count {count_b} of {n}" in text
    assert "Δ share" in text
    page.screenshot(path=str(output_dir / "confusion-difference-hover.png"))

    # the per-class table shows both accuracies and the delta
    page.wait_for_selector("#confusion-classes td[data-dash-column='delta_b']")
    page.locator("#confusion-classes th[data-dash-column='name'] input[type='text']").fill(names[k])
    page.keyboard.press("Enter")
    row = page.locator("#confusion-classes tr:has(td[data-dash-column='delta_b'])").first
    _wait(lambda: names[k] in row.inner_text(), 10, "the filtered row")
    a1 = float(row.locator("td[data-dash-column='top1']").inner_text())
    b1 = float(row.locator("td[data-dash-column='top1_b']").inner_text())
    d = float(row.locator("td[data-dash-column='delta_b']").inner_text())
    assert a1 == pytest.approx(100 * hit_a[labels == k].mean(), abs=0.05)
    assert b1 == pytest.approx(100 * hit_b[labels == k].mean(), abs=0.05)
    assert d == pytest.approx(a1 - b1, abs=0.11) and d > 0

    # one run at two epochs, by URL
    page.goto(f"{base}/confusion?run=a&compare=a&epoch=3&compare_epoch=1")
    _state(page, lambda s: "a epoch 3 minus a epoch 1" in s["title"], 60, "two epochs")

    # other classes: refused with a clear message, the plain matrix stays
    page.goto(f"{base}/confusion?run=a&compare=other&epoch=3&compare_epoch=3")
    page.wait_for_selector("#confusion-compare-error:has-text('cannot compare a with other')")
    msg = page.locator("#confusion-compare-error").inner_text()
    assert "n99999999" in msg
    plain = _state(page)
    assert "minus" not in plain["title"]
