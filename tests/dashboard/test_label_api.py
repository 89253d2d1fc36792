"""``GET /api/v1/label-issues`` and ``GET /api/v1/calibration`` through the app's Flask server
(the real routes, access checks and RunCache; the browser test asks a real gunicorn too), on a
run logged through ``epochscope.init`` and a copy whose last epoch predates the label arrays."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

import epochscope
from dashboard.kit import calibration_chart
from dashboard.labels import views as label_views
from epochscope.analysis.label_issues import COLUMNS
from epochscope.reader import LABEL_STATS_MISSING
from tests.support import make_label_run, make_train_stats_run, strip_label_arrays

FIELDS = [*COLUMNS, "label_name", "suggested_name", "flagged", "flagged_epochs"]


@pytest.fixture
def runs(tmp_path: Path, monkeypatch) -> Path:
    runs_dir = tmp_path / "runs"
    run_dir, _, _ = make_label_run(runs_dir, "labels")
    shutil.copytree(run_dir, runs_dir / "old")
    strip_label_arrays(runs_dir / "old", 3)
    monkeypatch.setenv("RUNS_DIR", str(runs_dir))
    return runs_dir


@pytest.fixture
def client(runs: Path):
    from dashboard.app import server

    return server.test_client()


def test_label_issues_answers_the_runs_ranking_as_json(runs: Path, client) -> None:
    r = client.get("/api/v1/label-issues?run=labels&epoch=3&limit=7")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Epochscope-Epoch"] == "3" and r.headers["Epochscope-Run"] == "labels"
    body = r.get_json()
    assert isinstance(body, list) and len(body) == 7
    assert list(body[0]) == FIELDS  # the documented order
    expected = epochscope.open_run(runs / "labels").label_issues(3, limit=7)
    assert [row["index"] for row in body] == expected["index"].tolist()
    assert np.allclose([row["score"] for row in body], expected["score"], atol=1e-6)
    assert body[0]["label_name"] == expected["label_name"][0]
    # defaults: the latest epoch, 100 rows; the other method ranks differently
    default = client.get("/api/v1/label-issues?run=labels")
    assert default.headers["Epochscope-Epoch"] == "3" and len(default.get_json()) == 100
    margin = client.get("/api/v1/label-issues?run=labels&limit=20&method=normalized_margin")
    assert [x["index"] for x in margin.get_json()] != [x["index"] for x in default.get_json()[:20]]
    # the whole ranking at most 10,000 rows a reply: this run's 120 all come back
    assert len(client.get("/api/v1/label-issues?run=labels&limit=10000").get_json()) == 120
    # an older epoch of the old run still has its arrays
    assert client.get("/api/v1/label-issues?run=old&epoch=2").status_code == 200


def test_calibration_answers_the_runs_dict_as_json(runs: Path, client) -> None:
    r = client.get("/api/v1/calibration?run=labels&epoch=2")
    assert r.status_code == 200
    body = r.get_json()
    expected = epochscope.open_run(runs / "labels").calibration(2)
    assert body["run"] == "labels" and body["epoch"] == 2
    for key in ("ece", "ece_scaled", "temperature", "accuracy", "count"):
        assert body[key] == pytest.approx(expected[key]), key
    assert len(body["bins"]) == 15 and len(body["bins_scaled"]) == 15
    assert list(body["bins"][0]) == ["lower", "upper", "accuracy", "confidence", "count"]
    assert [b["count"] for b in body["bins"]] == expected["bins"]["count"].tolist()
    assert len(body["by_class"]) == 10 and body["by_class"][1]["name"] == "Egyptian cat"
    assert {b["band"] for b in body["by_band"]} == set(expected["by_band"]["band"])
    assert client.get("/api/v1/calibration?run=labels").get_json()["epoch"] == 3


def test_training_label_issues_over_http_are_the_runs_ranking(tmp_path: Path, monkeypatch) -> None:
    from dashboard.app import server
    from epochscope.train_labels import ISSUE_COLUMNS, TRAIN_STATS_MISSING

    runs_dir = tmp_path / "runs"
    run_dir, planted = make_train_stats_run(runs_dir, "dyn")
    make_label_run(runs_dir, "plain")  # no training statistics
    monkeypatch.setenv("RUNS_DIR", str(runs_dir))
    client = server.test_client()
    r = client.get("/api/v1/label-issues?run=dyn&split=train&limit=40")
    assert r.status_code == 200 and r.headers["Epochscope-Epoch"] == "3"
    rows = r.get_json()
    assert [list(row) for row in rows[:1]] == [list(ISSUE_COLUMNS)]
    assert {row["index"] for row in rows} == set(planted.tolist())
    expected = epochscope.open_run(run_dir).training_label_issues(2, 3, limit=5)
    part = client.get("/api/v1/label-issues?run=dyn&split=train&first=2&last=3&limit=5")
    assert [row["index"] for row in part.get_json()] == expected["index"].tolist()
    # the whole ranking as a streamed CSV download (what the page's link fetches)
    csv_reply = client.get("/api/v1/label-issues.csv?run=dyn&split=train")
    assert csv_reply.status_code == 200 and csv_reply.is_streamed
    assert "dyn-epoch0003-train-label-issues.csv" in csv_reply.headers["Content-Disposition"]
    whole = epochscope.open_run(run_dir).training_label_issues()
    table = list(csv.reader(io.StringIO(csv_reply.get_data(as_text=True))))
    assert table[0] == list(ISSUE_COLUMNS) and len(table) == 1 + 400
    assert [int(r[0]) for r in table[1:]] == whole["index"].tolist()
    one = client.get("/api/v1/label-issues.csv?run=dyn&split=train&label=2&epoch=2")
    rows = list(csv.reader(io.StringIO(one.get_data(as_text=True))))[1:]
    want = epochscope.open_run(run_dir).training_label_issues(last=2)
    assert [int(r[0]) for r in rows] == want[want["label"] == 2]["index"].tolist()
    val = client.get("/api/v1/label-issues.csv?run=dyn")  # the validation ranking too
    assert val.status_code == 200 and val.get_data(as_text=True).startswith("index,")
    for query, status, message in (
        ("label-issues.csv?run=plain&split=train", 409, TRAIN_STATS_MISSING),
        ("label-issues.csv?run=dyn&split=train&label=9", 400, "label must be between"),
    ):
        r = client.get(f"/api/v1/{query}")
        assert r.status_code == status and message in r.get_json()["error"], r.get_json()
    for query, status, message in (
        ("run=plain&split=train", 409, TRAIN_STATS_MISSING),
        ("run=dyn&split=test", 400, "split must be val or train"),
        ("run=dyn&split=train&first=4", 400, "first must be between 1 and 3"),
    ):
        r = client.get(f"/api/v1/label-issues?{query}")
        assert r.status_code == status and message in r.get_json()["error"], r.get_json()


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("label-issues?run=nope", 404, "no run named"),
        ("calibration?run=nope", 404, "no run named"),
        ("label-issues?run=../etc", 400, "invalid run name"),
        ("label-issues?run=labels&epoch=9", 404, "no predictions for epoch 9"),
        ("calibration?run=labels&epoch=9", 404, "no predictions for epoch 9"),
        ("calibration?run=labels&epoch=x", 400, "whole number"),
        ("label-issues?run=labels&limit=0", 400, "between 1 and 10,000"),
        ("label-issues?run=labels&limit=10001", 400, "between 1 and 10,000"),
        ("label-issues?run=labels&limit=many", 400, "whole number"),
        ("label-issues?run=labels&method=loss", 400, "method must be one of"),
        ("label-issues?run=old", 409, LABEL_STATS_MISSING),
        ("calibration?run=old&epoch=3", 409, LABEL_STATS_MISSING),
    ],
)
def test_errors_are_clear_json(client, query: str, status: int, message: str) -> None:
    r = client.get(f"/api/v1/{query}")
    assert r.status_code == status, r.get_data(as_text=True)
    assert message in r.get_json()["error"]


def test_damaged_predictions_file_is_a_409_not_a_500(runs: Path, client) -> None:
    path = runs / "labels" / "predictions" / "epoch-0002.npz"
    path.write_bytes(path.read_bytes()[:200])
    r = client.get("/api/v1/calibration?run=labels&epoch=2")
    assert r.status_code == 409 and "cannot read" in r.get_json()["error"]


def test_view_functions_draw_the_figures_and_the_csv(runs: Path) -> None:
    from epochscope import labels

    run = epochscope.open_run(runs / "labels")
    report = labels.reliability(run, 3)
    fig = label_views.reliability_figure(report, "labels · epoch 3")
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.meta for t in bars] == ["bins", "bins_scaled"] and len(bars[0].x) == 15
    title = fig.layout.title.text
    assert f"ECE {report['ece']:.1%} before" in title
    assert f"{report['ece_scaled']:.1%} after" in title
    counts = report["bins"]["count"]
    assert sum(y is None for y in bars[0].y) == int((counts == 0).sum())  # empty bins: no bar
    one = labels.reliability(run, 3, label=1)
    assert one["count"] == int((run.labels == 1).sum())
    series = run.ece_series()
    ece = calibration_chart.ece_figure(series, "t")
    assert [t.meta for t in ece.data] == ["ece", "ece_scaled", "temperature"]
    assert list(ece.data[0].y) == series["ece"] and ece.data[2].yaxis == "y2"
    cols = labels.issue_columns(run, 3, label=1)
    assert set(cols["label"]) == {1}
    text = label_views.issues_csv(labels.issue_columns(run, 3))
    lines = text.splitlines()
    assert lines[0] == ",".join(FIELDS) and len(lines) == 121
    cards = label_views.issue_cards(run, cols, allowed=[])
    assert cards and cards[0].label == run.names[1] and cards[0].thumbnail is None
    options = [o["value"] for o in label_views.group_options(run)]
    assert options[0] == "all" and "band:cat" in options and "class:9" in options
    assert label_views.parse_group("class:3", 10) == {"label": 3}
    assert label_views.parse_group("class:30", 10) == {}
    assert label_views.parse_group("band:cat", 10) == {"band": "cat"}
