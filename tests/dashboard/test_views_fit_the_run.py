"""The confusion explorer shows what a run has (issue 21's views, built on epochscope.Run): no
hierarchy order, relatedness or band column for a run without a hierarchy; class names on the
axes when few enough classes are visible to read them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import epochscope
from dashboard.confusion import data, service
from dashboard.confusion.layout import CLASS_COLUMNS
from tests.support import make_fake_run

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _own_loop_run(tmp_path: Path) -> Path:
    """A run as a plain loop writes it: names only, no hierarchy, no devices."""
    labels = np.arange(50) % 10
    rng = np.random.default_rng(0)
    with epochscope.init("plain", tmp_path, classes=NAMES, val_labels=labels, epochs=2) as run:
        for epoch in (1, 2):
            run.log_predictions(epoch, rng.normal(size=(50, 10)) + 3 * np.eye(10)[labels])
            run.log_epoch(epoch, train_loss=1.0 / epoch)
    return tmp_path / "plain"


def _ticks(view: service.MatrixView, axis: str) -> list[str]:
    return list(view.figure["layout"][axis].get("ticktext", []))


def test_a_run_without_hierarchy_offers_no_hierarchy_order_relatedness_or_band(
    tmp_path: Path,
) -> None:
    data.clear()
    run = data.run(_own_loop_run(tmp_path))
    assert run.hierarchy is None and run.relations is None
    assert [o["value"] for o in service.order_options(run)] == ["index", "cluster"]
    assert run.relatedness_series() == ([], [])
    ids = [c["id"] for c in service.class_columns(run, CLASS_COLUMNS)]
    assert "band" not in ids and "wnid" not in ids and {"name", "top1"} <= set(ids)
    # the default order of such a run is the clustered one, and the title says so
    view = service.matrix_view(run, 2, "top5", "wordnet", "eq_hist", (0, 10), (0, 10))
    assert "clustered order" in view.figure["layout"]["title"]["text"]


def test_a_wordnet_run_keeps_its_hierarchy_order_bands_and_ids(tmp_path: Path) -> None:
    data.clear()
    run = data.run(make_fake_run(tmp_path, "inet"))
    options = service.order_options(run)
    assert options[0] == {"label": "WordNet order", "value": "wordnet"}
    ids = [c["id"] for c in service.class_columns(run, CLASS_COLUMNS)]
    assert "band" in ids and "wnid" in ids
    assert run.relations is not None and len(run.relatedness_series()[0]) == 2


def test_class_names_on_the_axes_when_legible(tmp_path: Path) -> None:
    data.clear()
    run = data.run(_own_loop_run(tmp_path))
    view = service.matrix_view(run, 2, "top5", "index", "eq_hist", (0, 10), (0, 10))
    assert _ticks(view, "xaxis") == NAMES and _ticks(view, "yaxis") == NAMES
    order = run.order("cluster")
    view = service.matrix_view(run, 2, "top5", "cluster", "eq_hist", (0, 10), (0, 10))
    assert _ticks(view, "xaxis") == [NAMES[i] for i in order]  # in display order
    # too many classes for their names: a 300-class full view names none (bands, if any)
    data.clear()
    labels = np.arange(600) % 300
    many = [f"class number {i}" for i in range(300)]
    with epochscope.init("many", tmp_path, classes=many, val_labels=labels) as logger:
        logger.log_predictions(1, np.eye(300)[labels])
    big = data.run(tmp_path / "many")
    full = service.matrix_view(big, 1, "top5", "index", "eq_hist", (0, 300), (0, 300))
    assert not _ticks(full, "xaxis")
    zoom = service.matrix_view(big, 1, "top5", "index", "eq_hist", (100, 110), (100, 110))
    assert _ticks(zoom, "xaxis") == many[100:110]  # zoomed in, the names come back
