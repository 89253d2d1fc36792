"""The dashboard in a real browser: gunicorn serving the app, Debian's Chromium via Playwright."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_TRAIN_ARGS
from tests.support import POINTS_JS
from tests.support import wait_for as _wait
from tests.waits import idle_ms

pytestmark = pytest.mark.browser


def _points(page, run: str) -> int:
    return page.evaluate(POINTS_JS, ["training-graph-accuracy", f"{run}/val_top5"])


def test_training_page_gains_an_epoch_live(
    demo_data: Path, tmp_path: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    base = dashboard_server(runs)
    page = browser_page
    page.goto(f"{base}/?run=live")
    page.wait_for_selector("#training-graph-accuracy .js-plotly-plot")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    log = (tmp_path / "train.log").open("wb")
    trainer = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "--data", str(demo_data),
         "--runs-dir", str(runs), "--name", "live", *TINY_TRAIN_ARGS, "--epochs", "4"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )  # fmt: skip
    try:
        first = _wait(lambda: max(_points(page, "live"), 0), 120, "the first epoch point")
        assert first < 4, "the run finished before the page could watch it grow"
        grown = _wait(
            lambda: _points(page, "live") if _points(page, "live") > first else 0,
            90, "another epoch point without a reload",
        )  # fmt: skip
        assert grown > first
        assert page.evaluate("window.__sameDocument === true")
        # the "are the mistakes related to the true class?" chart follows the prediction files
        page.wait_for_selector("#training-mistakes .js-plotly-plot", timeout=idle_ms(15))
        assert "related" in page.inner_text("#training-mistakes")
        page.screenshot(path=str(output_dir / "training-live.png"), full_page=True)
        if grown < 4 and trainer.poll() is None:
            page.wait_for_selector(".badge.state-running", timeout=idle_ms(10))
            # a trainer that goes away releases run.lock: the page says so without a reload
            os.killpg(trainer.pid, signal.SIGTERM)
            trainer.wait(timeout=60)
            page.wait_for_selector(".badge.state-stopped", timeout=idle_ms(15))
            assert page.evaluate("window.__sameDocument === true")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGTERM)
        trainer.wait(timeout=30)
        log.close()


def _chelsea_jpeg(folder: Path) -> Path:
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = folder / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, "JPEG", quality=90)
    return path


def _pick(page, dropdown_id: str, label: str) -> None:
    page.click(f"#{dropdown_id}")
    page.get_by_role("option", name=label, exact=True).click()


def test_classifier_page_and_api(
    tiny_run: Path, tmp_path: Path, tiny_site: str, browser_page, output_dir: Path
) -> None:
    photo = _chelsea_jpeg(tmp_path)
    not_image = tmp_path / "notes.txt"
    not_image.write_text("this is not a photo\n" * 20)
    base = tiny_site
    page = browser_page
    page.goto(f"{base}/classify?run={tiny_run.name}")
    page.wait_for_selector("#classify-upload input[type=file]", state="attached")
    _wait(lambda: page.locator("#classify-epoch").inner_text().strip() == "epoch 3", 20,
          "the latest epoch to be chosen")  # fmt: skip
    started = time.monotonic()
    page.set_input_files("#classify-upload input[type=file]", [str(photo), str(not_image)])
    page.wait_for_selector(".classify-card .classify-pct", timeout=idle_ms(30))
    latency = time.monotonic() - started
    cards = page.locator(".classify-card")
    assert cards.count() == 2
    # the browser may read the files in any order: find each card by its file name
    cat = cards.filter(has_text="chelsea.jpg")
    bad = cards.filter(has_text="notes.txt")
    assert cat.locator(".classify-row").count() == 5
    pcts = cat.locator(".classify-pct").all_inner_texts()
    exact = [cat.locator(".classify-pct").nth(i).get_attribute("title") for i in range(5)]
    assert all(p.endswith("%") for p in pcts) and len(pcts) == 5
    assert cat.locator(".classify-label small").first.inner_text().strip().startswith("n")
    assert "not an image" in bad.locator(".classify-error").inner_text()
    assert "Run tiny, epoch 3" in page.inner_text(".classify-caption")
    page.screenshot(path=str(output_dir / "classify-epoch3.png"), full_page=True)

    _pick(page, "classify-epoch", "epoch 1")
    page.wait_for_selector("text=Run tiny, epoch 1", timeout=idle_ms(30))
    cat_1 = page.locator(".classify-card").filter(has_text="chelsea.jpg").locator(".classify-pct")
    exact_1 = [cat_1.nth(i).get_attribute("title") for i in range(cat_1.count())]
    assert len(exact_1) == 5 and exact_1 != exact, "another epoch's model must answer differently"
    page.screenshot(path=str(output_dir / "classify-epoch1.png"), full_page=True)
    print(f"upload-to-labels latency in the browser: {latency:.2f} s")

    # the scoring API over real HTTP, multipart like curl -F image=@chelsea.jpg
    status, body = _post_multipart(
        f"{base}/api/v1/classify", {"run": "tiny", "epoch": "2"}, "image", photo
    )
    assert status == 200, body
    assert body["run"] == "tiny" and body["epoch"] == 2 and len(body["top5"]) == 5
    assert {"index", "wnid", "name", "probability"} == set(body["top5"][0])
    status, body = _post_multipart(f"{base}/api/v1/classify", {}, "image", not_image)
    assert status == 415 and "not an image" in body["error"]

    page.goto(f"{base}/?run=tiny")
    page.wait_for_selector("text=epoch 3 of 3")
    _wait(lambda: _points(page, "tiny") == 3, 10, "three epoch points")
    page.screenshot(path=str(output_dir / "training-tiny.png"), full_page=True)


def _post_multipart(url: str, fields: dict[str, str], file_field: str, path: Path):
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n".encode())  # fmt: skip
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    body.write(head.encode())
    body.write(path.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    req = urllib.request.Request(
        url, data=body.getvalue(), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
