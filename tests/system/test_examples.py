"""The examples/ scripts run as a user runs them, and their runs show in the dashboard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader
from tests.conftest import REPO
from tests.support import POINTS_JS, TO_PAGE_JS
from tests.support import wait_for as _wait
from tests.waits import idle_ms, run_watched

REAL_PHOTOS = REPO.parent / "shared" / "data" / "real-photos-10"
if not REAL_PHOTOS.is_dir():
    REAL_PHOTOS = Path("/work/shared/data/real-photos-10")

MATRIX_JS = """
() => {
    const gd = document.querySelector('#confusion-graph .js-plotly-plot');
    if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) return null;
    return {x: gd.layout.xaxis.range, title: gd.layout.title.text};
}
"""


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plain_pytorch.py, 2 epochs on the real photos (or the demo data without them)."""
    if not REAL_PHOTOS.is_dir():
        pytest.skip(f"{REAL_PHOTOS} is not here")
    runs = tmp_path_factory.mktemp("example-runs")
    proc = subprocess_example(runs, "plain_pytorch.py", "--data", str(REAL_PHOTOS),
                              "--epochs", "2", "--name", "plain")  # fmt: skip
    assert "epoch 2:" in proc.stdout
    return runs / "plain"


def subprocess_example(runs: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """``python examples/SCRIPT --runs-dir RUNS ARGS``, as the README shows it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, str(REPO / "examples" / script), "--runs-dir", str(runs), *args]
    proc = run_watched(cmd, silence=300, what=f"examples/{script}", env=env, cwd=REPO)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_plain_loop_writes_a_whole_run_that_learns(plain_run: Path) -> None:
    info = reader.read_run_info(plain_run)
    assert info.engine == "epochscope-api" and info.data.num_val == 1000
    table = reader.epoch_table(reader.MetricsCache().get(plain_run).events)
    assert list(table) == [1, 2]
    assert table[2]["val_top1"] > 0.25  # ten classes: chance is 0.10
    assert reader.prediction_epochs(plain_run) == reader.model_epochs(plain_run) == [1, 2]
    _, paths = reader.read_val_index(plain_run)
    assert paths[0].startswith("airplane/") and (Path(info.data.root) / paths[0]).is_file()


@pytest.mark.slow
@pytest.mark.browser
def test_plain_loop_run_in_the_dashboard(
    plain_run: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    from dashboard.confusion import data

    info = reader.read_run_info(plain_run)
    # the operator allows the photos' folder for drill-down thumbnails (default: none)
    base = dashboard_server(plain_run.parent, env={"EPOCHSCOPE_DATA_ROOTS": info.data.root})
    page = browser_page
    names = [n for _, _, n in reader.read_classes(plain_run)]
    labels, paths = reader.read_val_index(plain_run)
    top5, prob = reader.load_predictions(plain_run, 2)

    # 1. curves: both epochs on the accuracy chart
    page.goto(f"{base}/?run=plain")
    _wait(
        lambda: page.evaluate(POINTS_JS, ["training-graph-accuracy", "plain/val_top5"]) == 2,
        60, "two epoch points",
    )  # fmt: skip
    page.screenshot(path=str(output_dir / "example-plain-training.png"), full_page=True)

    # 2. the confusion matrix of epoch 2, then a click on the biggest diagonal cell
    page.goto(f"{base}/confusion?run=plain")
    state = _wait(lambda: page.evaluate(MATRIX_JS), 60, "the matrix")
    assert sorted(state["x"]) == [0, 10] and "epoch 2" in state["title"]
    order = data.run(plain_run).order("wordnet")
    diag = np.bincount(labels[top5[:, 0] == labels], minlength=10)
    hits = np.array([(top5[labels == c] == c).any(axis=1).sum() for c in range(10)])
    best = int(np.argmax(hits))
    slot = int(np.flatnonzero(order == best)[0])
    x, y = page.evaluate(TO_PAGE_JS, [slot + 0.5, slot + 0.5])
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_selector("#confusion-drill .confusion-image", timeout=idle_ms(30))
    cards = page.locator("#confusion-drill .confusion-image")
    assert cards.count() == min(int(hits[best]), 24) and diag[best] > 0
    # thumbnails of the real photos, read from the data root the run recorded
    assert page.locator("#confusion-drill img[src^='data:image/jpeg']").count() == cards.count()
    page.screenshot(path=str(output_dir / "example-plain-drill.png"), full_page=True)

    # 3. the classifier page: a validation photo gets the top-5 of the logged epoch-2 model,
    # the same classes (and nearly the same probabilities) as the logged predictions
    row = int(np.flatnonzero(prob[:, 0] > 0.5)[0]) if (prob[:, 0] > 0.5).any() else 0
    photo = Path(reader.read_run_info(plain_run).data.root) / paths[row]
    page.goto(f"{base}/classify?run=plain")
    page.wait_for_selector("#classify-upload input[type=file]", state="attached")
    _wait(lambda: page.locator("#classify-epoch").inner_text().strip() == "epoch 2", 30,
          "the latest epoch")  # fmt: skip
    page.set_input_files("#classify-upload input[type=file]", [str(photo)])
    page.wait_for_selector(".classify-card .classify-pct", timeout=idle_ms(30))
    labels_shown = page.locator(".classify-card .classify-label").all_inner_texts()
    assert [t.split()[0] for t in labels_shown] == [names[k].split()[0] for k in top5[row]]
    shown = [
        float(page.locator(".classify-card .classify-pct").nth(i).get_attribute("title"))
        for i in range(5)
    ]
    assert np.allclose(shown, prob[row], atol=0.01)
    page.screenshot(path=str(output_dir / "example-plain-classify.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["lightning_module.py", "hf_trainer.py"])
def test_framework_examples_write_whole_runs(script: str, demo_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("lightning" if script.startswith("lightning") else "transformers")
    runs = tmp_path / "runs"
    subprocess_example(runs, script, "--data", str(demo_data), "--epochs", "2", "--name", "ex")
    run_dir = runs / "ex"
    info = reader.read_run_info(run_dir)
    assert info.engine == "epochscope-api" and info.epochs == 2
    table = reader.epoch_table(reader.MetricsCache().get(run_dir).events)
    assert list(table) == [1, 2] and {"train_loss", "val_loss", "val_top5"} <= set(table[2])
    assert reader.prediction_epochs(run_dir) == reader.model_epochs(run_dir) == [1, 2]
    labels, paths = reader.read_val_index(run_dir)
    assert len(labels) == info.data.num_val == 200 and (Path(info.data.root) / paths[0]).is_file()
    from dashboard.confusion import data

    data.clear()
    assert data.run(run_dir).has_bands  # the demo's wnids: WordNet bands
    assert epochscope.open_run(run_dir).summary.state == "finished"


@pytest.mark.slow
@pytest.mark.browser
def test_own_loop_run_gets_only_the_views_it_has_data_for(
    tmp_path: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    """An own-loop run with no devices, no throughput, no steps and no model: those charts are
    not drawn, and the classifier page says why the run cannot classify and how to fix it."""
    runs = tmp_path / "runs"
    classes = [f"class{i}" for i in range(10)]
    labels = np.arange(50) % 10
    rng = np.random.default_rng(0)
    with epochscope.init("own", runs, classes=classes, val_labels=labels, epochs=3) as run:
        for epoch in (1, 2, 3):
            run.log_predictions(epoch, rng.normal(size=(50, 10)).astype(np.float32))
            run.log_epoch(epoch, train_loss=2.0 / epoch, lr=0.1)
    base = dashboard_server(runs)
    page = browser_page
    page.goto(f"{base}/?run=own")
    _wait(lambda: page.evaluate(POINTS_JS, ["training-graph-accuracy", "own/val_top5"]) == 3,
          60, "three epoch points")  # fmt: skip
    for panel in ("accuracy", "loss", "lr"):
        assert page.locator(f"#training-graph-{panel}").is_visible(), panel
    for panel in ("throughput", "devices", "steps"):
        assert not page.locator(f"#training-graph-{panel}").is_visible(), panel
    card = page.locator(".progress-card").first.inner_text()
    assert "epoch 3 of 3" in card
    page.screenshot(path=str(output_dir / "own-loop-training.png"), full_page=True)

    page.goto(f"{base}/classify?run=own")
    why = page.wait_for_selector("#classify-why p", timeout=idle_ms(30)).inner_text()
    assert "own was logged without a model" in why and "run.log_model(epoch, model)" in why
    page.screenshot(path=str(output_dir / "own-loop-classify.png"), full_page=True)
