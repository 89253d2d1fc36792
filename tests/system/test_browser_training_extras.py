"""Training page: the hyper-parameter table (differing values marked), the run picker's
hyper-parameter search and per-band accuracy; the classifier page's demo-data notice. Real
gunicorn and Debian Chromium, on copies of the real tiny training run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from epochscope.run import Run
from tests.support import make_fake_run
from tests.waits import idle_ms
from tests.waits import wait_for as _wait

pytestmark = pytest.mark.browser


def _copy_run(src: Path, dst: Path, lr: float | None = None) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    if lr is not None:
        info = json.loads((dst / "run.json").read_text())
        info["name"] = dst.name
        info["hparams"]["lr"] = lr
        (dst / "run.json").write_text(json.dumps(info))


def test_hparams_table_picker_search_and_band_accuracy(
    tiny_run: Path, tmp_path: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    _copy_run(tiny_run, runs / "a")
    _copy_run(tiny_run, runs / "b", lr=0.05)
    base = dashboard_server(runs)
    page = browser_page
    page.goto(f"{base}/?run=a&run=b")
    page.wait_for_selector("#training-hparams table.hparams")
    lr = page.locator("#training-hparams tr", has=page.locator("td", has_text="lr")).filter(
        has_text="0.05"
    )
    assert lr.count() == 1 and "hparam-differs" in (lr.get_attribute("class") or "")
    assert lr.locator("td").all_inner_texts()[1:] == ["0.1", "0.05"]
    arch = page.locator("#training-hparams tr").filter(has_text="resnet18_v2")
    assert arch.count() == 1 and "hparam-differs" not in (arch.get_attribute("class") or "")

    # per-band accuracy over epochs, for each run: animals, objects and the bands
    graph = page.locator("[id*='training-bands-graph'] .js-plotly-plot").first
    graph.wait_for(timeout=idle_ms(30))
    names = graph.evaluate("gd => gd.data.map(t => t.name)")
    assert {"animals", "objects"} <= set(names) and len(names) > 4
    xs = graph.evaluate("gd => gd.data[0].x")
    assert list(xs) == [1, 2, 3]
    page.screenshot(path=str(output_dir / "training-hparams-bands.png"), full_page=True)

    # the run picker filters by hyper-parameters: lr=0.05 leaves only b
    page.click("#shell-runs")  # opens the picker with its search box focused
    page.keyboard.type("lr=0.05")
    options = page.get_by_role("option")
    _wait(lambda: options.count() >= 1, 10, "the filtered options")
    labels = options.all_inner_texts()
    assert any(t.startswith("b ·") for t in labels) and not any(t.startswith("a ·") for t in labels)
    # the picker's cached line names the architecture as the Run read afresh does: the tiny run
    # is a width-0.25, small-stem ResNet (the two summary paths once labelled it differently)
    fresh = Run(runs / "b").summary.label()
    assert "resnet18_v2 x0.25 small stem" in fresh
    assert any(t.startswith(fresh + " · started") for t in labels), (labels, fresh)


def test_demo_notice_for_a_demo_run_only(
    tiny_run: Path, tmp_path: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    _copy_run(tiny_run, runs / "demo")
    make_fake_run(runs, "photos", epochs_done=1)  # data.root is not a demo dataset
    photo = tmp_path / "photo.jpg"
    Image.effect_noise((96, 96), 60).convert("RGB").save(photo, "JPEG")
    base = dashboard_server(runs)
    page = browser_page
    for run, expected in (("demo", True), ("photos", False)):
        page.goto(f"{base}/classify?run={run}")
        page.wait_for_selector("#classify-upload input[type=file]", state="attached")
        _wait(lambda: page.locator("#classify-epoch").inner_text().strip().startswith("epoch"),
              20, "an epoch")  # fmt: skip
        page.set_input_files("#classify-upload input[type=file]", [str(photo)])
        page.wait_for_selector(".classify-card .classify-pct", timeout=idle_ms(30))
        assert f"Run {run}" in page.inner_text(".classify-caption")
        notice = page.locator("#classify-demo-notice")
        if expected:
            assert "never seen a photo" in notice.inner_text()
            page.screenshot(path=str(output_dir / "classify-demo-notice.png"), full_page=True)
        else:
            assert notice.count() == 0
