"""Similar images in a real browser (gunicorn + Chromium): a photo dropped on the classifier page
shows its nearest validation images (thumbnails, labels, distances) beside its top-5, and an
image of the confusion drill-down shows its neighbours."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from epochscope import reader
from tests.support import TO_PAGE_JS, wait_for
from tests.waits import idle_ms

pytestmark = pytest.mark.browser


def test_classifier_page_shows_the_neighbours_of_a_photo(
    tiny_run: Path, demo_data: Path, tmp_path: Path, tiny_site: str, browser_page,
    output_dir: Path,
) -> None:  # fmt: skip
    labels, paths = reader.read_val_index(tiny_run)
    names = [n for _, _, n in reader.read_classes(tiny_run)]
    row = 42
    photo = tmp_path / ("photo" + Path(paths[row]).suffix)
    shutil.copy(demo_data / paths[row], photo)
    # the drill-down's thumbnails come from an allowed data root
    base = tiny_site  # the demo data is an allowed root
    page = browser_page
    page.goto(f"{base}/classify?run={tiny_run.name}")
    page.wait_for_selector("#classify-upload input[type=file]", state="attached")
    wait_for(lambda: page.locator("#classify-epoch").inner_text().strip() == "epoch 3", 20,
             "the latest epoch to be chosen")  # fmt: skip
    page.set_input_files("#classify-upload input[type=file]", [str(photo)])
    page.wait_for_selector(".classify-card .similar-item img", timeout=idle_ms(30))
    card = page.locator(".classify-card").filter(has_text=photo.name)
    assert card.locator(".classify-row").count() == 5  # the top-5 is still there
    items = card.locator(".similar-item")
    assert items.count() == 8
    # thumbnails really drawn (decoded by the browser), closest first
    widths = card.locator(".similar-item img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(widths) == 8 and min(widths) > 0
    distances = [float(t) for t in card.locator(".similar-distance").all_inner_texts()]
    assert distances == sorted(distances) and distances[0] < 0.01  # the image itself
    assert card.locator(".similar-label").first.inner_text().strip() == names[labels[row]]
    assert f"#{row} " in items.first.get_attribute("title")
    page.screenshot(path=str(output_dir / "classify-similar.png"), full_page=True)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # the drill-down: a clicked image's "similar" button shows its neighbours in a strip
    page.goto(f"{base}/confusion?run={tiny_run.name}")
    page.wait_for_selector("#confusion-graph .js-plotly-plot", timeout=idle_ms(60))
    page.wait_for_selector("#confusion-pairs td", timeout=idle_ms(60))  # the matrix is drawn
    for slot in range(len(names)):  # a diagonal cell with images (top-5 hits of its class)
        x, y = page.evaluate(TO_PAGE_JS, [slot + 0.5, slot + 0.5])
        page.mouse.click(x, y)
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_selector("#confusion-drill .drill-similar", timeout=idle_ms(5))
            break
    button = page.locator("#confusion-drill .drill-similar").first
    row = int(button.evaluate("b => JSON.parse(b.id).row"))
    button.click()
    page.wait_for_selector("#confusion-similar-strip .similar-item img", timeout=idle_ms(20))
    strip = page.locator("#confusion-similar-strip")
    assert f"Nearest to #{row} " in strip.inner_text()
    assert strip.locator(".similar-item").count() == 8
    assert f"#{row} " not in strip.locator(".similar-item").first.get_attribute("title")
    page.screenshot(path=str(output_dir / "drill-similar.png"), full_page=True)
