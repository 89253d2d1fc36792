"""Likely mislabeled images and calibration in a real browser (gunicorn + Debian Chromium), on
copies of the real tiny training run (its predictions files hold the label arrays) and of it as
a run from before them (every predictions file re-saved without the arrays): the view's
thumbnails with given and suggested labels, its CSV export, the reliability diagram, the ECE
curve on the training page, the way in from the per-class table, what an old run says, and a
copied link that reproduces the filters, cards and diagram."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import epochscope
from epochscope import labels
from epochscope.reader import LABEL_STATS_MISSING, prediction_epochs
from tests.support import http, strip_label_arrays
from tests.support import wait_for as _wait
from tests.waits import idle_ms

pytestmark = pytest.mark.browser

FIELDS = ["index", "path", "label", "suggested", "score", "label_name", "suggested_name",
          "flagged", "flagged_epochs"]  # fmt: skip
RELIABILITY_JS = """
() => {
    const gd = document.querySelector('#labels-reliability .js-plotly-plot');
    if (!gd || !gd.data || !gd.data.length) return null;
    return {title: gd.layout.title.text, metas: gd.data.map(t => t.meta),
            bins: gd.data.map(t => (t.x || []).length)};
}
"""


@pytest.fixture
def label_runs(tiny_run: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    ignore = shutil.ignore_patterns("checkpoints")
    shutil.copytree(tiny_run, runs / "tiny", ignore=ignore)
    shutil.copytree(tiny_run, runs / "old", ignore=ignore)
    for epoch in prediction_epochs(runs / "old"):
        strip_label_arrays(runs / "old", epoch)
    return runs


def _pick(page, dropdown_id: str, label: str) -> None:
    page.click(f"#{dropdown_id}")
    page.get_by_role("option", name=label, exact=True).click()


def _server(dashboard_server, runs: Path) -> str:
    data_root = json.loads((runs / "tiny" / "run.json").read_text())["data"]["root"]
    return dashboard_server(runs, env={"EPOCHSCOPE_DATA_ROOTS": data_root})


def test_mislabeled_view_thumbnails_csv_and_reliability_diagram(
    label_runs: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    run = epochscope.open_run(label_runs / "tiny")
    expected = run.label_issues()
    base = _server(dashboard_server, label_runs)
    page = browser_page
    page.goto(f"{base}/labels?run=tiny")

    # the first 24 images, most likely wrong first, each with its thumbnail and given -> suggested
    page.wait_for_selector("#labels-issues .labels-image")
    cards = page.locator("#labels-issues .labels-image")
    _wait(lambda: cards.count() == 24, 20, "24 cards")
    assert page.locator("#labels-issues img[src^='data:image/jpeg']").count() == 24
    given = page.locator("#labels-issues .labels-given").all_inner_texts()
    suggested = page.locator("#labels-issues .labels-suggested").all_inner_texts()
    assert given == expected["label_name"][:24].tolist()
    assert suggested == expected["suggested_name"][:24].tolist()
    assert f"#{expected['index'][0]} " in cards.first.inner_text()
    assert "epochs 1-3" in page.locator("#labels-summary").inner_text()

    # the reliability diagram: 15 bins before and after scaling, the ECE in the title
    fig = _wait(lambda: page.evaluate(RELIABILITY_JS), 20, "the reliability diagram")
    assert fig["metas"][:2] == ["bins", "bins_scaled"] and fig["bins"][:2] == [15, 15]
    ece = run.calibration()["ece"]
    assert f"ECE {ece:.1%} before" in fig["title"]
    page.screenshot(path=str(output_dir / "labels-view.png"), full_page=True)

    # the CSV of the whole ranking, for a relabelling tool
    with page.expect_download(timeout=idle_ms(30)) as download:
        page.click("#labels-export")
    assert download.value.suggested_filename == "tiny-epoch0003-label-issues.csv"
    with open(download.value.path(), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == FIELDS
    assert len(rows) == 1 + len(run.labels)
    assert [int(r[0]) for r in rows[1:]] == expected["index"].tolist()
    assert rows[1][5] == expected["label_name"][0] and rows[1][6] == expected["suggested_name"][0]

    # the same ranking over the real server's HTTP API
    reply = http(f"{base}/api/v1/label-issues?run=tiny&limit=5")
    assert reply.status == 200
    assert [r["index"] for r in reply.json()] == expected["index"][:5].tolist()
    cal = http(f"{base}/api/v1/calibration?run=tiny")
    assert cal.status == 200 and cal.json()["ece"] == pytest.approx(ece)
    old = http(f"{base}/api/v1/calibration?run=old")
    assert old.status == 409 and LABEL_STATS_MISSING in old.json()["error"]


def test_ece_curve_the_way_in_from_the_class_table_and_an_old_run(
    label_runs: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    run = epochscope.open_run(label_runs / "tiny")
    series = run.ece_series()
    base = _server(dashboard_server, label_runs)
    page = browser_page

    # the training page: ECE over epochs (before, after scaling, the temperature) for the run
    # with the arrays; the old run says what is missing instead
    page.goto(f"{base}/?run=tiny&run=old")
    graph = page.locator("[id*='training-ece-graph'] .js-plotly-plot").first
    graph.wait_for(timeout=idle_ms(30))
    traces = graph.evaluate("gd => gd.data.map(t => [t.meta, t.x, t.y])")
    assert [t[0] for t in traces] == ["ece", "ece_scaled", "temperature"]
    assert traces[0][1] == [1, 2, 3]
    assert traces[0][2] == pytest.approx(series["ece"])
    assert traces[2][2] == pytest.approx(series["temperature"])
    missing = page.locator("[id*='training-ece-missing']")
    missing.wait_for(timeout=idle_ms(10))
    assert "old" in missing.inner_text() and LABEL_STATS_MISSING in missing.inner_text()
    page.screenshot(path=str(output_dir / "training-ece.png"), full_page=True)

    # from the per-class table: a class's images, then its likely mislabeled ones
    page.goto(f"{base}/classes?run=tiny")
    page.wait_for_selector("#confusion-classes td")
    name = page.locator("#confusion-classes td[data-dash-column='name']").first.inner_text()
    page.locator("#confusion-classes td[data-dash-column='name']").first.click()
    link = page.locator("#confusion-drill-labels")
    link.wait_for(timeout=idle_ms(20))
    assert name in link.inner_text()
    link.click()
    page.wait_for_url("**/labels?*label=*", timeout=idle_ms(10))
    page.wait_for_selector("#labels-issues .labels-image")
    given = _wait(
        lambda: (g := page.locator("#labels-issues .labels-given").all_inner_texts())
        and set(g) == {name} and g,
        20, "the cards of that class only",
    )  # fmt: skip
    index = run.names.index(name)
    assert len(given) == min(24, int((run.labels == index).sum()))
    page.screenshot(path=str(output_dir / "labels-one-class.png"), full_page=True)

    # a run from before the label arrays: the view says what is missing, not an error
    page.goto(f"{base}/labels?run=old")
    page.wait_for_selector("#labels-missing:has-text('no label scores')", timeout=idle_ms(20))
    assert LABEL_STATS_MISSING in page.locator("#labels-missing").inner_text()
    assert page.locator("#labels-issues .labels-image").count() == 0
    fig = _wait(lambda: page.evaluate(
        "() => { const gd = document.querySelector('#labels-reliability .js-plotly-plot');"
        " return gd && gd.layout.annotations && gd.layout.annotations[0].text; }"
    ), 20, "the reliability diagram's message")  # fmt: skip
    assert LABEL_STATS_MISSING in fig
    page.screenshot(path=str(output_dir / "labels-old-run.png"), full_page=True)


def test_a_copied_link_reproduces_the_filters_cards_and_scope(
    label_runs: Path, dashboard_server, browser_page
) -> None:
    """Choose an epoch, the method, a given and a suggested class and the reliability scope:
    the address bar then holds them, a new page opened at it shows the same filters, cards and
    diagram, and back undoes the scope."""
    run = epochscope.open_run(label_runs / "tiny")
    epoch, method = 2, "normalized_margin"
    top = run.label_issues(epoch, method=method)
    label, suggested = int(top["label"][0]), int(top["suggested"][0])
    expected = labels.issue_columns(run, epoch, limit=24, method=method, label=label,
                                    suggested=suggested)  # fmt: skip
    bands = labels.band_ids(run)[0]
    scope, option, what = (
        (f"band:{bands[0]}", f"band: {bands[0]}", bands[0]) if bands
        else (f"class:{label}", f"class: {run.names[label]}", run.names[label])
    )  # fmt: skip

    def href(p) -> str:  # the address bar (page.url lags behind history.replaceState)
        return p.evaluate("window.location.href")

    def shown(p) -> dict:
        return {
            "epoch": p.locator("#labels-epoch").inner_text().strip(),
            "label": p.locator("#labels-label").inner_text().strip(),
            "suggested": p.locator("#labels-suggested").inner_text().strip(),
            "method": p.locator("#labels-method input:checked").get_attribute("value"),
            "cards": p.locator("#labels-issues .labels-image").all_inner_texts(),
        }

    base = _server(dashboard_server, label_runs)
    page = browser_page
    page.goto(f"{base}/labels?run=tiny")
    page.wait_for_selector("#labels-issues .labels-image")
    _wait(lambda: "epoch=3" in href(page), 20, "the run and epoch in the URL")
    _pick(page, "labels-epoch", str(epoch))
    page.locator("#labels-method").get_by_text("normalized margin").click()
    _pick(page, "labels-label", run.names[label])
    _pick(page, "labels-suggested", run.names[suggested])
    cards = page.locator("#labels-issues .labels-image")
    _wait(lambda: cards.count() == len(expected["index"]) and
          {g for g in page.locator("#labels-issues .labels-given").all_inner_texts()}
          == {run.names[label]}, 20, "the cards of the given and suggested class")  # fmt: skip
    _pick(page, "labels-group", option)
    fig = _wait(lambda: (f := page.evaluate(RELIABILITY_JS)) and what in f["title"] and f,
                20, "the reliability diagram of the scope")  # fmt: skip
    link = _wait(lambda: "scope=" in (h := href(page)) and h, 20, "the scope in the URL")
    assert parse_qs(urlsplit(link).query) == {
        "run": ["tiny"], "epoch": [str(epoch)], "method": [method], "label": [str(label)],
        "suggested": [str(suggested)], "scope": [scope],
    }  # fmt: skip
    before = shown(page)
    assert before["epoch"] == str(epoch) and before["method"] == method
    assert before["label"] == run.names[label] and before["suggested"] == run.names[suggested]
    assert [c.split("#")[-1].split(" ")[0] for c in before["cards"]] == [
        str(i) for i in expected["index"]
    ]

    # the copied link in a new page: the same filters, cards and diagram
    other = page.context.new_page()
    other.goto(link)
    other.wait_for_selector("#labels-issues .labels-image")
    again = _wait(lambda: (s := shown(other)) == before and s, 30, "the same view")
    assert again["cards"] == before["cards"]
    _wait(lambda: (f := other.evaluate(RELIABILITY_JS)) and f["title"] == fig["title"], 20,
          "the same reliability diagram")  # fmt: skip
    assert f"epoch {epoch}" in fig["title"]
    assert href(other) == link  # opening it wrote nothing new
    other.close()

    # back: the scope before (the whole set), the filters kept
    page.go_back()
    _wait(lambda: "scope=" not in href(page), 20, "the URL before the scope")
    _wait(lambda: (f := page.evaluate(RELIABILITY_JS)) and "all images" in f["title"], 30,
          "the diagram of all images again")  # fmt: skip
    _wait(lambda: shown(page)["cards"] == before["cards"], 30, "the same cards after back")
