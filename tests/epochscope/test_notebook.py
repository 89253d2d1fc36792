"""epochscope.open_run for notebooks: metrics as a DataFrame, predictions, the confusion
histogram (the dashboard's), and the HoloViews + datashader view in the dashboard's order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import epochscope
from dashboard.confusion import data
from epochscope.analysis.confusion import confusion

CLASSES = [("n02123045", "tabby"), ("n01440764", "tench"), ("n02124075", "Egyptian cat")]


def _run(tmp_path: Path) -> Path:
    labels = np.arange(30) % 3
    rng = np.random.default_rng(0)
    with epochscope.init("nb", tmp_path, classes=CLASSES, val_labels=labels, epochs=2) as run:
        for epoch in (1, 2):
            run.log_step(epoch * 10, loss=1.0 / epoch, lr=0.1, steps_per_epoch=10)
            run.log_predictions(epoch, rng.normal(size=(30, 3)) + 2 * np.eye(3)[labels])
            run.log_epoch(epoch, train_loss=1.0 / epoch)
    return tmp_path / "nb"


def test_open_run_gives_frames_predictions_and_the_histogram(tmp_path: Path) -> None:
    run = epochscope.open_run(_run(tmp_path))
    assert run.state == "finished" and run.epochs == [1, 2] and run.classes[0] == "tabby"
    m = run.metrics  # a pandas DataFrame
    assert list(m.index) == [1, 2] and m.loc[2, "train_loss"] == pytest.approx(0.5)
    assert {"val_top1", "val_top5", "val_loss"} <= set(m.columns)
    assert len(run.steps) == 2
    top5, _ = run.predictions()
    assert top5.shape == (30, 5) and (top5[:, 3:] == -1).all()  # three classes: padded
    for mode in ("top5", "top1"):
        mine = run.confusion(2, mode).dense()
        theirs = confusion(run.labels, top5, 3, mode)
        dense = np.zeros((3, 3), np.int64)
        dense[theirs.rows, theirs.cols] = theirs.counts
        assert np.array_equal(mine, dense)
    assert run.confusion(2, "top1").dense().sum() == 30
    with pytest.raises(LookupError, match="not a run directory"):
        epochscope.open_run(tmp_path / "nowhere")


@pytest.mark.slow
def test_confusion_view_is_a_zoomable_holoviews_matrix_in_the_dashboards_order(
    tmp_path: Path,
) -> None:
    hv = pytest.importorskip("holoviews")
    pytest.importorskip("bokeh")
    run_dir = _run(tmp_path)
    view = epochscope.open_run(run_dir).confusion_view()
    hv.extension("bokeh")
    assert isinstance(view, hv.DynamicMap)  # rasterize: re-rendered for each zoom
    image = view[()]  # the frame for the full range
    order = data.run(run_dir).order("wordnet")  # fish (tench) before the cats
    assert order.tolist() == [1, 0, 2]
    counts = np.expm1(image.dimension_values(2, flat=False))
    assert counts.sum() == pytest.approx(
        epochscope.open_run(run_dir).confusion().dense().sum(), rel=1e-6
    )
    fig = hv.render(view, backend="bokeh")
    ticks = fig.xaxis[0].major_label_overrides
    assert set(ticks.values()) == {"fish", "cat"}
    assert "WordNet order" in fig.title.text
