"""The offline report in a real browser (Debian's Chromium via Playwright), opened from a
file:// path with every other request blocked and counted: nothing leaves the page, no script
error, the per-class table sorts, the matrix zooms in the page down to a named cell (the pixel
under it has that cell's colour), and a hostile run's report runs none of its text."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import epochscope
from bench.synthetic_runs import write_run
from epochscope.report import build_report
from epochscope.report.colours import share_colours
from tests.support import make_hostile_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

M = 12  # the matrix canvas's margin for the band strips (report.js)


def _open(browser, path: Path, output_dir: Path | None = None):
    """A page showing the report at ``path``; (page, blocked requests, errors, dialogs)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    url = path.resolve().as_uri()
    blocked: list[str] = []
    errors: list[str] = []
    dialogs: list[str] = []

    def route(r) -> None:
        if r.request.url == url:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.wait_for_function("() => window.EpochscopeReport && window.EpochscopeReport.ready")
    return context, page, blocked, errors, dialogs


def _column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#es-classes-table tbody tr",
        f"rows => rows.filter(r => r.style.display !== 'none')"
        f".map(r => r.cells[{index}].getAttribute('data-v'))",
    )


def test_report_opens_offline_sorts_and_zooms_to_a_single_cell(
    tiny_run: Path, tmp_path: Path, browser, output_dir: Path
) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    run = epochscope.open_run(run_dir)
    root = json.loads((run_dir / "run.json").read_text())["data"]["root"]
    report = tmp_path / "tiny-report.html"
    report.write_text(build_report(run, data_roots=[root]), encoding="utf-8")
    context, page, blocked, errors, _ = _open(browser, report)
    try:
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length == 2")
        for sid in ("run", "curves", "confusion", "evolution", "classes", "relatedness",
                    "label-issues", "calibration"):  # fmt: skip
            assert page.locator(f"section#{sid}").is_visible(), sid
        page.screenshot(path=str(output_dir / "report-tiny.png"), full_page=True)

        # the per-class table sorts on a click of its title, both ways, and filters
        page.click("#es-classes-table th:has-text('top-1')")
        up = [float(v) for v in _column(page, 5)]
        assert up == sorted(up) and len(up) == run.num_classes
        page.click("#es-classes-table th:has-text('top-1')")
        assert [float(v) for v in _column(page, 5)] == sorted(up, reverse=True)
        page.fill("input.es-filter", run.names[3])
        assert run.names[3] in _column(page, 2)
        assert len(_column(page, 2)) < run.num_classes
        page.fill("input.es-filter", "")

        # the evolution slider shows epoch 1's frame
        page.fill(".es-slider input[type=range]", "0")
        page.dispatch_event(".es-slider input[type=range]", "input")
        assert page.inner_text(".es-slider .es-epoch") == f"epoch {run.epochs[0]}"

        # zoom to a named cell: the most frequent wrong top-5 guess of the last epoch
        conf = run.confusion(run.epochs[-1], "top5")
        off = np.flatnonzero(conf.rows != conf.cols)
        i = off[np.argmax(conf.counts[off])]
        true, guess = int(conf.rows[i]), int(conf.cols[i])
        count, images = int(conf.counts[i]), int(conf.images[true])
        page.fill("#es-confusion .es-true", run.names[true])
        page.fill("#es-confusion .es-guess", run.names[guess])
        page.click("#es-confusion .es-go")
        readout = page.inner_text("#es-confusion .es-readout")
        assert run.names[true] in readout and run.names[guess] in readout
        assert f"count {count} " in readout
        view = page.evaluate("() => window.EpochscopeReport.viewers['es-confusion'].view")
        slots = run.positions("wordnet")
        assert view["s"] >= 32  # one cell is at least 32 x 32 screen pixels
        x = M + (int(slots[guess]) + 0.5 - view["x"]) * view["s"]
        y = M + (int(slots[true]) + 0.5 - view["y"]) * view["s"]
        shot = Image.open(io.BytesIO(page.locator("#es-confusion canvas").screenshot()))
        pixel = shot.convert("RGB").getpixel((int(x), int(y)))
        expected = tuple(int(c) for c in share_colours(np.array([count / images]))[0])
        assert max(abs(a - b) for a, b in zip(pixel, expected, strict=True)) <= 2, (
            pixel, expected,
        )  # fmt: skip
        # the cell one to the right shows its own share, not this one's
        r, c = int(slots[true]), int(slots[guess])
        if c + 1 < run.num_classes:
            m = np.zeros((run.num_classes, run.num_classes))
            m[slots[conf.rows], slots[conf.cols]] = conf.counts / conf.images[conf.rows]
            right = shot.convert("RGB").getpixel((int(x + view["s"]), int(y)))
            want = tuple(int(v) for v in share_colours(m[r, c + 1 : c + 2])[0])
            assert max(abs(a - b) for a, b in zip(right, want, strict=True)) <= 2
        # whole matrix again: the coarsest level fits the canvas
        page.click("#es-confusion .es-reset")
        assert page.evaluate("() => window.EpochscopeReport.viewers['es-confusion'].view.s") < 40
        page.mouse.wheel(0, -600)
        assert not errors, errors
        assert blocked == [], blocked
    finally:
        context.close()


def test_hostile_run_report_runs_none_of_its_text(tmp_path: Path, browser) -> None:
    bad = ["<script>alert(1)</script>", '"onerror=alert(1)', "<img src=x onerror=alert(2)>",
           "</script><script>alert(3)</script>"]  # fmt: skip
    run_dir, other = make_hostile_runs(tmp_path / "runs", bad, {"note": bad[0], bad[1]: bad[2]})
    report = tmp_path / "hostile.html"
    html = build_report(epochscope.open_run(run_dir), compare=epochscope.open_run(other))
    report.write_text(html, encoding="utf-8")
    context, page, blocked, errors, dialogs = _open(browser, report)
    try:
        canvas = page.locator("#es-confusion canvas").bounding_box()
        for k in range(8):  # hover over the cells, whose read-out shows the names
            page.mouse.move(canvas["x"] + 20 + 80 * k, canvas["y"] + 20 + 80 * k)
        page.locator("#es-difference canvas").hover(position={"x": 100, "y": 300})
        assert "difference of shares" in page.inner_text("#es-difference .es-readout")
        page.click("#es-classes-table th:has-text('class')")
        assert bad[0] in page.inner_text("#es-classes-table")  # shown as text
        assert page.locator("img[src=x]").count() == 0
        assert dialogs == [] and blocked == [] and not errors, (dialogs, blocked, errors)
    finally:
        context.close()


def test_a_1000_class_matrix_zooms_from_the_overview_level_to_one_cell(
    tmp_path: Path, browser, output_dir: Path
) -> None:
    run_dir = write_run(tmp_path / "runs" / "wide", num_classes=1000, per_class=3, epochs=2)
    run = epochscope.open_run(run_dir)
    report = tmp_path / "wide.html"
    report.write_text(build_report(run), encoding="utf-8")
    context, page, blocked, errors, _ = _open(browser, report)
    try:
        viewer = "window.EpochscopeReport.viewers['es-confusion']"
        assert page.evaluate(f"() => {viewer}.level()") == 2  # 720 px for 1,000 cells
        page.locator("#es-confusion").screenshot(path=str(output_dir / "report-1000.png"))
        conf = run.confusion(2, "top5")
        off = np.flatnonzero(conf.rows != conf.cols)
        i = off[len(off) // 2]
        true, guess = int(conf.rows[i]), int(conf.cols[i])
        page.evaluate(f"() => {viewer}.zoomTo({true}, {guess})")
        assert page.evaluate(f"() => {viewer}.level()") == 1
        view = page.evaluate(f"() => {viewer}.view")
        slots = run.positions("wordnet")
        x = M + (int(slots[guess]) + 0.5 - view["x"]) * view["s"]
        y = M + (int(slots[true]) + 0.5 - view["y"]) * view["s"]
        shot = Image.open(io.BytesIO(page.locator("#es-confusion canvas").screenshot()))
        pixel = shot.convert("RGB").getpixel((int(x), int(y)))
        share = int(conf.counts[i]) / int(conf.images[true])
        expected = tuple(int(c) for c in share_colours(np.array([share]))[0])
        assert max(abs(a - b) for a, b in zip(pixel, expected, strict=True)) <= 2
        assert f"count {int(conf.counts[i])} " in page.inner_text("#es-confusion .es-readout")
        assert not errors and blocked == [], (errors, blocked)
    finally:
        context.close()
