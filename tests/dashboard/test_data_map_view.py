"""The data map and the labels page's training tab without a browser, on a run logged through
the public API with training statistics (40 of 400 labels moved): every seen image drawn at its
variability and confidence, a zoom drawing exactly those inside, a click finding the image and
its history as the epoch files hold it, and the training ranking's cards and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

import epochscope
from dashboard.data_map import link, service
from dashboard.data_map.figure import history_figure
from dashboard.labels import views
from epochscope import reader, train_labels
from epochscope.train_labels import TRAIN_STATS_MISSING
from tests.support import make_train_stats_run


@pytest.fixture(scope="module")
def stats_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    runs = tmp_path_factory.mktemp("runs")
    run_dir, planted = make_train_stats_run(runs, "dyn")
    for i in planted[:3]:  # a few training images on disk: their cards get thumbnails
        path = runs / "data" / "train" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    labels = np.arange(8) % 2
    with epochscope.init("plain", runs, classes=["a", "b"], val_labels=labels) as run:
        run.log_predictions(1, np.eye(2)[labels])
        run.log_epoch(1)
    return run_dir, planted


def test_every_seen_image_is_drawn_and_a_zoom_draws_exactly_those_inside(stats_run) -> None:
    run = epochscope.open_run(stats_run[0])
    d = train_labels.dynamics(run)
    seen = d.epochs_seen > 0
    view = service.map_view(run, None, "band")
    assert view.state == "ready" and view.epochs == (1, 2, 3)
    assert view.drawn == int(seen.sum()) == 400
    # epoch 1 alone: drop_last left 16 images unseen, and they are not drawn
    first = service.map_view(run, 1, "band")
    assert first.epochs == (1,) and first.drawn == 384
    go.Figure(view.figure)  # a valid Plotly figure
    assert "400 training images over epochs 1-3" in view.figure["layout"]["title"]["text"]
    x, y = (0.0, 0.2), (0.0, 0.25)  # the 'hard' corner, where moved labels gather
    zoomed = service.map_view(run, None, "correctness", x, y)
    v, c = d.variability, d.confidence
    inside = (v >= x[0]) & (v <= x[1]) & (c >= y[0]) & (c <= y[1])
    assert zoomed.drawn == int(inside.sum()) > 0
    assert (zoomed.x, zoomed.y) == (x, y)
    assert service.map_view(run, 2, "band").epochs == (1, 2)
    legend = service.legend(run, None, "band")
    assert sum(n for _, _, n in legend) == 400
    assert {name for name, _, _ in legend} <= {"easy", "ambiguous", "hard", "unseen"}
    assert sum(n for _, _, n in service.legend(run, None, "correctness")) == int(seen.sum())


def test_a_click_finds_the_image_and_its_history_as_the_epoch_files_hold_it(stats_run) -> None:
    run_dir, planted = stats_run
    run = epochscope.open_run(run_dir)
    d = train_labels.dynamics(run)
    i = int(planted[0])
    view = service.map_view(run, None, "band")
    radius = (view.grid.dx, view.grid.dy)
    found = service.nearest_image(run, None, float(d.variability[i]), float(d.confidence[i]),
                                  radius)  # fmt: skip
    assert found is not None
    assert (d.variability[found], d.confidence[found]) == (d.variability[i], d.confidence[i])
    assert service.nearest_image(run, None, 0.5, 1.01, (1e-4, 1e-4)) is None  # nothing there
    detail = service.image_detail(run, None, i)
    assert detail.thumbnail is None  # no allowed root: no image, never a file outside one
    labels, _ = train_labels.train_index(run)
    assert detail.label == run.names[labels[i]] and detail.suggested != detail.label
    assert detail.numbers["confidence"] == pytest.approx(float(d.confidence[i]))
    h = detail.history
    assert h["epoch"] == [1, 2, 3]
    for e, p, m, o in zip(h["epoch"], h["p_label"], h["margin"], h["other"], strict=True):
        full = reader.load_train_stats(run_dir, e, 400, 4)
        if np.isnan(full["p_label"][i]):
            assert p is None and m is None and o == -1
        else:
            assert p == pytest.approx(float(full["p_label"][i]))
            assert m == pytest.approx(float(full["margin"][i])) and o == full["other"][i]
    fig = go.Figure(history_figure(h, "t"))
    assert [t.meta for t in fig.data] == ["p_label", "margin"]
    with_root = service.image_detail(run, None, i, allowed=[run_dir.parent / "data"])
    assert with_root.thumbnail and with_root.thumbnail.startswith("data:image/")


def test_every_row_of_an_epoch_reads_as_the_whole_file_holds_it(stats_run) -> None:
    run_dir, _ = stats_run
    full = reader.load_train_stats(run_dir, 2, 400, 4)
    for row in range(400):
        one = reader.train_stats_row(run_dir, 2, row, 400)
        assert one["other"] == full["other"][row]
        for k in ("p_label", "margin"):
            assert np.isnan(one[k]) if np.isnan(full[k][row]) else one[k] == full[k][row]
    with pytest.raises(ValueError, match="outside"):
        reader.train_stats_row(run_dir, 2, 400, 400)


def test_a_run_without_training_statistics_says_what_is_missing(stats_run) -> None:
    plain = epochscope.open_run(stats_run[0].parent / "plain")
    view = service.map_view(plain, None, "band")
    assert view.state == "missing" and TRAIN_STATS_MISSING in view.message
    cards, summary, missing = views.train_issues_view(plain, 1)
    assert cards == [] and summary == "" and TRAIN_STATS_MISSING in missing


def test_the_training_tab_lists_the_ranking_and_its_filters(stats_run) -> None:
    run_dir, planted = stats_run
    run = epochscope.open_run(run_dir)
    expected = run.training_label_issues()
    cards, summary, missing = views.train_issues_view(run, 3, allowed=[run_dir.parent / "data"])
    assert missing == "" and "400 training images" in summary and "epochs 1-3" in summary
    assert [c.row for c in cards] == expected["index"][:24].tolist()
    assert [c.suggested for c in cards] == expected["suggested_name"][:24].tolist()
    assert all(c.detail.startswith("AUM ") for c in cards)
    with_image = {c.row for c in cards if c.thumbnail}
    assert with_image == set(planted[:3].tolist()) & {c.row for c in cards}
    label = int(expected["label"][0])
    cards, summary, _ = views.train_issues_view(run, 3, label=label)
    assert {c.label for c in cards} == {run.names[label]}
    assert f"{int((expected['label'] == label).sum()):,} training images" in summary
    # the CSV of the whole ranking, as the page exports it
    rows = list(csv.reader(io.StringIO(views.issues_csv(train_labels.issue_columns(run)))))
    assert rows[0] == list(train_labels.ISSUE_COLUMNS) and len(rows) == 401
    assert [int(r[0]) for r in rows[1:]] == expected["index"].tolist()


def test_the_data_map_link_reads_back_as_the_same_view() -> None:
    view = {"context": ["r"], "x": [0.0, 0.2], "y": [0.1, 0.3]}
    search = link.view_query("r", 3, "correctness", view, 17)
    assert link.view_from_query(parse_qs(search[1:])) == {
        "run": "r", "last": 3, "colour": "correctness", "x": (0.0, 0.2), "y": (0.1, 0.3),
        "image": 17,
    }  # fmt: skip
    whole = {"context": ["r"], "x": list(service.X_EXTENT), "y": list(service.Y_EXTENT)}
    assert link.view_query("r", 2, "band", whole, None) == "?run=r&last=2"
    assert link.view_from_query({"colour": "pink", "image": "-3"})["colour"] == "band"


def test_threshold_samples_are_neither_drawn_nor_ranked(stats_run, tmp_path: Path) -> None:
    """A run whose label_edits.tsv names threshold samples (as --threshold-samples writes it):
    the map leaves them out, the ranking too, and flags by their AUM."""
    import json
    import shutil

    run_dir = tmp_path / "thr"
    shutil.copytree(stats_run[0], run_dir)
    rows = np.arange(0, 400, 10)
    (run_dir / "label_edits.tsv").write_text(
        "row\tedit\tlabel\tfrom\n" + "".join(f"{r}\tthreshold\t4\t0\n" for r in rows)
    )
    info = json.loads((run_dir / "run.json").read_text())
    info["data"]["threshold_samples"] = len(rows)
    (run_dir / "run.json").write_text(json.dumps(info))
    run = epochscope.open_run(run_dir)
    assert service.map_view(run, None, "band").drawn == 400 - len(rows)
    assert sum(n for _, _, n in service.legend(run, None, "band")) == 400 - len(rows)
    issues = run.training_label_issues()
    assert len(issues) == 400 - len(rows) and not set(issues["index"]) & set(rows.tolist())
    at = train_labels.cut(run)
    d = train_labels.dynamics(run)
    assert at == pytest.approx(float(np.percentile(d.aum[rows], 99)))
    assert issues["flagged"].tolist() == (issues["aum"] <= at).tolist()
    cards, summary, _ = views.train_issues_view(run, 3)
    assert "flagged: AUM at most" in summary and any(c.flagged for c in cards)
    assert train_labels.issue_count(run) == 400 - len(rows)
