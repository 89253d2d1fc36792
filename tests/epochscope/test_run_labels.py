"""``Run.label_issues``, ``Run.calibration`` and ``Run.ece_series`` on a run logged through
``epochscope.init`` (its predictions files hold the label arrays), against the numpy analysis
run by hand on the stored arrays; and a run whose files predate the arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader
from epochscope.analysis import calibration as cal
from epochscope.analysis.label_issues import COLUMNS, EpochScores, label_issues
from tests.support import make_label_run, strip_label_arrays

EXTRA = ("label_name", "suggested_name", "flagged", "flagged_epochs")


@pytest.fixture
def label_run(tmp_path: Path) -> tuple[Path, np.ndarray]:
    run_dir, _, labels = make_label_run(tmp_path)
    return run_dir, labels


def _stored(run_dir: Path, epoch: int) -> tuple[np.ndarray, np.ndarray, dict]:
    top5, prob = reader.load_predictions(run_dir, epoch)
    return top5, prob, reader.load_label_stats(run_dir, epoch)


def test_label_issues_is_the_ranking_of_the_last_three_epochs(label_run) -> None:
    run_dir, labels = label_run
    run = epochscope.open_run(run_dir)
    frame = run.label_issues()
    assert tuple(frame.columns) == (*COLUMNS, *EXTRA)
    assert len(frame) == len(labels)
    by_hand = label_issues(
        [EpochScores(t, p, s["p_label"], s["margin"]) for t, p, s in
         (_stored(run_dir, e) for e in (1, 2, 3))],
        labels, 10,
    )  # fmt: skip
    assert frame["index"].tolist() == by_hand["index"].tolist()
    assert np.allclose(frame["score"], by_hand["score"], atol=1e-6)
    assert frame["suggested"].tolist() == by_hand["suggested"].tolist()
    assert (frame["score"].diff().dropna() <= 1e-12).all()  # most likely wrong first
    first = int(frame["index"][0])
    assert frame["path"][0] == f"val/{first}.png" and frame["label"][0] == labels[first]
    assert frame["label_name"][0] == run.names[labels[first]]
    assert frame["suggested_name"][0] == run.names[int(frame["suggested"][0])]
    # the planted tenth of wrong labels fills the top of the ranking
    truth = np.arange(len(labels)) % 10
    moved = np.flatnonzero(labels != truth)
    k = len(moved)
    share = np.isin(frame["index"][:k], moved).mean()
    assert share >= 3 * k / len(labels), share
    # limit, another epoch (its own window), the other method
    assert run.label_issues(limit=5)["index"].tolist() == by_hand["index"][:5].tolist()
    one = run.label_issues(epoch=1)
    only_first = label_issues([EpochScores(*_stored(run_dir, 1)[:2], *(
        _stored(run_dir, 1)[2][k] for k in ("p_label", "margin")))], labels, 10)  # fmt: skip
    assert one["index"].tolist() == only_first["index"].tolist()
    margin = run.label_issues(method="normalized_margin")
    assert margin["index"].tolist() != frame["index"].tolist()
    with pytest.raises(ValueError, match="method must be"):
        run.label_issues(method="loss")


def test_calibration_and_ece_series_equal_the_analysis_on_the_stored_arrays(label_run) -> None:
    run_dir, labels = label_run
    run = epochscope.open_run(run_dir)
    got = run.calibration()
    top5, _, s = _stored(run_dir, 3)
    correct = top5[:, 0] == labels
    assert got["epoch"] == 3
    assert got["ece"] == pytest.approx(cal.ece(s["confidence"], correct), abs=1e-12)
    assert got["ece_scaled"] == pytest.approx(cal.ece(s["confidence_scaled"], correct), abs=1e-12)
    assert got["temperature"] == pytest.approx(float(s["temperature"]))
    assert got["accuracy"] == pytest.approx(correct.mean()) and got["count"] == len(labels)
    bins = got["bins"]
    assert list(bins.columns) == ["lower", "upper", "accuracy", "confidence", "count"]
    assert len(bins) == 15 and bins["count"].sum() == len(labels)
    assert bins["lower"].iloc[0] == 0 and bins["upper"].iloc[-1] == 1
    assert got["bins_scaled"]["count"].sum() == len(labels)
    by_class = got["by_class"]
    assert list(by_class["name"]) == run.names and len(by_class) == 10
    for c in (1, 4):
        sel = labels == c
        assert by_class["ece"][c] == pytest.approx(cal.ece(s["confidence"][sel], correct[sel]))
        assert by_class["count"][c] == sel.sum()
    by_band = got["by_band"]
    assert "cat" in set(by_band["band"])  # WordNet bands of the real ImageNet classes
    cats = np.isin(labels, [i for i, b in enumerate(run.bands) if b == "cat"])
    row = by_band[by_band["band"] == "cat"].iloc[0]
    assert row["count"] == cats.sum()
    assert row["ece"] == pytest.approx(cal.ece(s["confidence"][cats], correct[cats]))
    series = run.ece_series()
    assert series["epoch"] == [1, 2, 3]
    for i, e in enumerate(series["epoch"]):
        t5, _, st = _stored(run_dir, e)
        assert series["ece"][i] == pytest.approx(cal.ece(st["confidence"], t5[:, 0] == labels))
        assert series["temperature"][i] == pytest.approx(float(st["temperature"]))


def test_each_file_is_read_once(label_run, monkeypatch) -> None:
    run_dir, _ = label_run
    calls: list[int] = []
    real = reader.load_label_stats

    def counting(path, epoch, num_rows=None):
        calls.append(epoch)
        return real(path, epoch, num_rows)

    monkeypatch.setattr(reader, "load_label_stats", counting)
    run = epochscope.open_run(run_dir)
    assert run.label_epochs == [1, 2, 3]
    run.label_issues()
    run.calibration()
    run.ece_series()
    assert sorted(calls) == [1, 2, 3]


def test_a_run_from_before_the_label_arrays_says_what_is_missing(label_run) -> None:
    run_dir, _ = label_run
    strip_label_arrays(run_dir, 3)
    run = epochscope.open_run(run_dir)
    assert run.epochs == [1, 2, 3] and run.label_epochs == [1, 2]
    assert run.label_stats(3) is None
    for call in (run.label_issues, run.calibration):
        with pytest.raises(LookupError, match="no label scores or temperature") as err:
            call()
        assert reader.LABEL_STATS_MISSING in str(err.value)
    assert len(run.label_issues(epoch=2)) == 120  # epochs 1-2 still have them
    assert run.ece_series()["epoch"] == [1, 2]
    for e in (1, 2):
        strip_label_arrays(run_dir, e)
    old = epochscope.open_run(run_dir)
    assert old.label_epochs == [] and old.ece_series()["epoch"] == []
    with pytest.raises(LookupError, match="was written before"):
        old.calibration(1)
    with pytest.raises(LookupError, match="no predictions for epoch 7"):
        old.label_issues(7)
