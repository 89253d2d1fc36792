"""Label-issue scores and calibration (epochscope.analysis.label_issues / calibration) against
the reference implementations users bolt on today: cleanlab's get_label_quality_scores and
find_label_issues, torchmetrics' MulticlassCalibrationError, a torch LBFGS temperature fit; and
the stored arrays of a predictions file, written and read back for real."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader
from epochscope.analysis import calibration as cal
from epochscope.analysis.label_issues import (
    EpochScores,
    confident_flags,
    confident_thresholds,
    label_issues,
    label_quality,
    suggested_labels,
)
from epochscope.predictions import LABEL_ARRAYS, label_stats, softmax, top5_from_logits
from epochscope.writer import RunWriter

# the reference libraries are imported by the tests that compare with them (each a few seconds
# to import: collection, and the tests that need none of them, never pay for them)


def _noisy(n: int, c: int, seed: int, scale: float = 1.5, signal: float = 2.5):
    """Logits where the true class leads by ``signal`` on average, and 5% of labels moved."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, n)
    z = (rng.standard_normal((n, c)) * scale).astype(np.float32)
    z[np.arange(n), truth] += rng.uniform(0, 2 * signal, n).astype(np.float32)
    labels = truth.copy()
    moved = rng.choice(n, n // 20, replace=False)
    labels[moved] = (truth[moved] + rng.integers(1, c, len(moved))) % c
    return z, labels, moved


@pytest.mark.parametrize(("n", "c"), [(500, 2), (2000, 10), (3000, 100)])
def test_quality_scores_equal_cleanlab(n: int, c: int) -> None:
    cleanlab_rank = pytest.importorskip("cleanlab.rank")
    z, labels, _ = _noisy(n, c, seed=c)
    stats = label_stats(z, labels)
    probs = softmax(z)
    for method in ("self_confidence", "normalized_margin"):
        ref = cleanlab_rank.get_label_quality_scores(
            labels, probs, method=method, adjust_pred_probs=False
        )
        ours = label_quality(stats["p_label"], stats["margin"], method)
        assert np.abs(ours - ref).max() < 1e-6, method
    # entropy and confidence, against their definitions on the float64 softmax
    entropy = -(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=1)
    assert np.abs(stats["entropy"] - entropy).max() < 1e-5
    assert np.abs(stats["confidence"] - probs.max(axis=1)).max() < 1e-6


@pytest.mark.parametrize(("n", "c", "scale"), [(3000, 10, 1.0), (4000, 100, 3.0)])
def test_ece_equals_torchmetrics(n: int, c: int, scale: float) -> None:
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.classification")
    z, labels, _ = _noisy(n, c, seed=n, scale=scale)
    stats = label_stats(z, labels)
    probs = torch.from_numpy(softmax(z))
    # confidences below 1: torchmetrics puts exactly 1.0 in a 16th bin of its own
    assert probs.max() < 1.0
    metric = tm.MulticlassCalibrationError(num_classes=c, n_bins=15, norm="l1")
    ref = float(metric(probs, torch.from_numpy(labels)))
    correct = z.argmax(axis=1) == labels
    assert abs(cal.ece(stats["confidence"], correct) - ref) < 1e-6
    # and at the fitted temperature
    scaled = torch.from_numpy(softmax(z.astype(np.float64) / float(stats["temperature"])))
    metric = tm.MulticlassCalibrationError(num_classes=c, n_bins=15, norm="l1")
    ref_scaled = float(metric(scaled, torch.from_numpy(labels)))
    assert abs(cal.ece(stats["confidence_scaled"], correct) - ref_scaled) < 1e-6


def _lbfgs_temperature(z: np.ndarray, labels: np.ndarray) -> float:
    torch = pytest.importorskip("torch")
    logits = torch.from_numpy(z).double()
    y = torch.from_numpy(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t], lr=0.5, max_iter=500, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
        tolerance_change=1e-14,
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


@pytest.mark.parametrize(("scale", "signal"), [(0.5, 1.0), (1.5, 2.5), (4.0, 9.0)])
def test_temperature_within_one_percent_of_lbfgs(scale: float, signal: float) -> None:
    z, labels, _ = _noisy(20000, 50, seed=7, scale=scale, signal=signal)
    t, top = cal.fit_temperature(z, labels)
    ref = _lbfgs_temperature(z, labels)
    assert abs(t - ref) / ref < 0.01, (t, ref)
    # the probabilities returned are the top-1 softmax at the returned T
    expected = softmax(z.astype(np.float64) / t).max(axis=1)
    assert np.abs(top - expected).max() < 1e-5
    assert cal.nll(z, labels, t) <= cal.nll(z, labels, 1.0) + 1e-9


def test_temperature_sums_over_ranks_equal_one_process() -> None:
    """Two ranks in lockstep (threads exchanging their sums, as all_reduce does), each with half
    the rows: both get the temperature one process gets from all of them."""
    z, labels, _ = _noisy(6000, 20, seed=3, scale=3.0)
    whole, _ = cal.fit_temperature(z, labels, subsample=10**9)
    halves = [(z[:2500], labels[:2500]), (z[2500:], labels[2500:])]
    slots: list = [None, None]
    barrier = threading.Barrier(2, timeout=60)
    results: list = [None, None]

    def rank(r: int) -> None:
        def reduce(sums: list[float]) -> list[float]:
            slots[r] = sums
            barrier.wait()
            total = [a + b for a, b in zip(*slots, strict=True)]
            barrier.wait()
            return total

        results[r] = cal.fit_temperature(*halves[r], reduce=reduce, subsample=10**9)[0]

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1]
    assert abs(results[0] - whole) / whole < 3e-3


def test_confident_learning_flags_equal_cleanlab() -> None:
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    for c in (4, 10, 50):
        z, labels, _ = _noisy(3000, c, seed=11 + c)
        stats = label_stats(z, labels)
        probs = softmax(z)
        top5, _ = top5_from_logits(z)
        top5 = top5.astype(np.int64)
        # the exact probabilities of the five: the flags' logic against cleanlab's
        prob5 = np.where(top5 >= 0, np.take_along_axis(probs, top5.clip(0), axis=1), 0.0)
        t = confident_thresholds(stats["p_label"], labels, c)
        flagged, exact = confident_flags(top5, prob5, stats["p_label"], stats["margin"], labels, t)
        ref = cleanlab_filter.find_label_issues(labels, probs, filter_by="confident_learning")
        assert ref.sum() > 0
        wrong = flagged != ref
        assert not wrong[exact].any(), c
        assert exact.mean() > 0.9


def test_ranking_orders_by_doubt_and_suggests_another_class() -> None:
    z, labels, moved = _noisy(4000, 10, seed=5)
    stats = label_stats(z, labels)
    top5, prob = top5_from_logits(z)
    epoch = EpochScores(top5, prob, stats["p_label"], stats["margin"])
    out = label_issues([epoch], labels, 10)
    assert sorted(out["index"].tolist()) == list(range(4000))  # every image once
    assert (np.diff(out["score"]) <= 0).all()
    assert np.allclose(out["score"], 1 - stats["p_label"][out["index"]])
    assert (out["suggested"] != out["label"]).all()
    assert np.array_equal(out["suggested"], suggested_labels(top5, labels)[out["index"]])
    # the flagged images lead: far more of them among the first hundred than overall
    assert out["flagged"][:100].mean() > 2 * out["flagged"].mean()
    # far better than chance at finding the moved labels
    k = len(moved)
    share = np.isin(out["index"][:k], moved).mean()
    assert share > 5 * len(moved) / len(labels)
    # stability: an image doubted in every epoch outranks one doubted only in the last
    calm = stats["p_label"].copy()
    doubted_once = out["index"][0]
    calm[doubted_once] = 1.0  # the earlier epoch (as accurate) trusted its label fully
    earlier = EpochScores(top5, prob, calm, stats["margin"])
    two = label_issues([earlier, epoch], labels, 10, limit=50)
    assert len(two["index"]) == 50 and (two["epochs"] == 2).all()
    assert doubted_once not in two["index"][:3].tolist()
    # an epoch far less accurate than the shown one does not count
    worse = top5.copy()
    worse[: len(worse) // 2, 0] = (labels[: len(worse) // 2] + 1) % 10
    early = EpochScores(worse, prob, calm, stats["margin"])
    gated = label_issues([early, epoch], labels, 10)
    assert (gated["epochs"] == 1).all()
    assert np.array_equal(gated["index"], out["index"])


def test_grouped_ece_is_ece_within_each_group() -> None:
    z, labels, _ = _noisy(3000, 10, seed=9)
    stats = label_stats(z, labels)
    correct = z.argmax(axis=1) == labels
    groups = labels % 3
    per = cal.grouped_ece(stats["confidence"], correct, groups, num_groups=4)
    for g in range(3):
        sel = groups == g
        assert abs(per["ece"][g] - cal.ece(stats["confidence"][sel], correct[sel])) < 1e-12
        assert per["count"][g] == sel.sum()
    assert per["count"][3] == 0 and per["ece"][3] == 0.0
    report = cal.calibration(
        z.argmax(axis=1), labels, stats["confidence"], stats["confidence_scaled"],
        float(stats["temperature"]), groups=groups,
    )  # fmt: skip
    assert report["bins"]["count"].sum() == 3000 and len(report["bins"]["count"]) == 15
    # logits made over-confident (x4): one temperature undoes most of it
    hot = label_stats(z * 4, labels)
    before = cal.ece(hot["confidence"], correct)
    after = cal.ece(hot["confidence_scaled"], correct)
    assert float(hot["temperature"]) > 2 and after < before / 2


def test_predictions_file_holds_the_arrays_and_old_files_still_load(tmp_path: Path) -> None:
    z, labels, _ = _noisy(300, 7, seed=1)
    top5, prob = top5_from_logits(z)
    stats = label_stats(z, labels)
    writer = RunWriter(tmp_path / "r")
    writer.acquire()
    writer.write_predictions(1, top5, prob, **stats)
    writer.write_predictions(2, top5, prob)  # as every file before these arrays
    with pytest.raises(ValueError, match="expected one of"):
        writer.write_predictions(3, top5, prob, p_label=stats["p_label"][:5])
    with pytest.raises(ValueError, match="expected one of"):
        writer.write_predictions(3, top5, prob, logits=z)
    writer.close()
    run = tmp_path / "r"
    got = reader.load_label_stats(run, 1, num_rows=300)
    assert got is not None
    for name in LABEL_ARRAYS:
        assert got[name].dtype == np.float32 and np.array_equal(got[name], stats[name])
    assert float(got["temperature"]) == float(stats["temperature"])
    assert reader.load_label_stats(run, 2) is None
    for epoch in (1, 2):  # the top-5 reader sees the same either way
        t5, _ = reader.load_predictions(run, epoch, num_rows=300, num_classes=7)
        assert np.array_equal(t5, top5)
    with pytest.raises(ValueError, match="must be 10 floats"):
        reader.load_label_stats(run, 1, num_rows=10)
    # a file with some of the arrays is refused, naming what is missing
    partial = {k: v for k, v in stats.items() if k != "entropy"}
    np.savez(run / "predictions" / "epoch-0004.npz", top5=top5, prob=prob, **partial)
    with pytest.raises(ValueError, match="missing entropy"):
        reader.load_label_stats(run, 4)


def test_log_predictions_stores_the_arrays(tmp_path: Path) -> None:
    z, labels, _ = _noisy(200, 7, seed=2)
    with epochscope.init("api", tmp_path, classes=[f"c{i}" for i in range(7)],
                         val_labels=labels) as run:  # fmt: skip
        run.log_predictions(1, z)
        run.log_epoch(1, train_loss=1.0)
    got = reader.load_label_stats(tmp_path / "api", 1, num_rows=200)
    assert got is not None
    expected = label_stats(z, labels)
    for name in LABEL_ARRAYS:
        assert np.array_equal(got[name], expected[name])


def test_trainer_evaluation_stores_the_arrays(tiny_run: Path) -> None:
    _, paths = reader.read_val_index(tiny_run)
    labels, _ = reader.read_val_index(tiny_run)
    for epoch in reader.prediction_epochs(tiny_run):
        got = reader.load_label_stats(tiny_run, epoch, num_rows=len(paths))
        assert got is not None, epoch
        top5, prob = reader.load_predictions(tiny_run, epoch)
        # the stored float32 confidence is the float16 top-1 probability, more precisely
        assert np.abs(got["confidence"] - prob[:, 0]).max() < 1e-3
        right = top5[:, 0] == labels
        assert (got["margin"][right] >= 0).all() and (got["margin"][~right] <= 0).all()
        assert 0.01 <= float(got["temperature"]) <= 100
        assert (got["entropy"] >= 0).all()


def test_rows_and_json_forms_for_the_views(tmp_path: Path) -> None:
    import json

    from epochscope.analysis.label_issues import COLUMNS, issue_rows, stability_window

    z, labels, _ = _noisy(400, 5, seed=4)
    stats = label_stats(z, labels)
    top5, prob = top5_from_logits(z)
    issues = label_issues([EpochScores(top5, prob, stats["p_label"], stats["margin"])], labels, 5)
    paths = [f"c/{i}.jpg" for i in range(400)]
    rows = issue_rows(issues, paths, [f"class{i}" for i in range(5)])
    assert tuple(rows)[: len(COLUMNS)] == COLUMNS
    first = issues["index"][0]
    assert rows["path"][0] == f"c/{first}.jpg" and rows["label_name"][0] == f"class{labels[first]}"
    json.dumps(rows)
    report = cal.calibration(top5[:, 0], labels, stats["confidence"], stats["confidence_scaled"],
                             float(stats["temperature"]), groups=labels)  # fmt: skip
    text = json.dumps(cal.jsonable(report), allow_nan=False)
    assert json.loads(text)["bins"]["count"] == report["bins"]["count"].tolist()
    assert stability_window([1, 2, 3, 5, 6], 5) == [2, 3, 5]
    assert stability_window([4], 4) == [4]
    with pytest.raises(LookupError):
        stability_window([1, 2], 3)


def test_rows_without_finite_logits_are_left_out_not_guessed(tmp_path: Path) -> None:
    """A diverged model's NaN or infinite logits: those images get NaN scores, the temperature
    is fitted on the others, and with none left it is NaN (stored and read back as such)."""
    z, labels, _ = _noisy(500, 10, seed=6, scale=3.0)
    bad = z.copy()
    bad[3, 2], bad[9, 0] = np.nan, np.inf
    stats = label_stats(bad, labels)
    keep = np.ones(500, bool)
    keep[[3, 9]] = False
    assert np.isnan(stats["p_label"][~keep]).all() and np.isfinite(stats["p_label"][keep]).all()
    alone = label_stats(z[keep], labels[keep])
    assert float(stats["temperature"]) == pytest.approx(float(alone["temperature"]), rel=3e-3)
    report = cal.calibration(bad.argmax(axis=1), labels, stats["confidence"],
                             stats["confidence_scaled"], float(stats["temperature"]))  # fmt: skip
    assert report["count"] == 498
    none = label_stats(np.full((4, 3), np.nan, np.float32), np.zeros(4, np.int64))
    assert np.isnan(none["temperature"])
    writer = RunWriter(tmp_path / "r")
    writer.acquire()
    writer.write_predictions(1, np.zeros((4, 3), np.int64), np.zeros((4, 3)), **none)
    writer.close()
    assert np.isnan(reader.load_label_stats(tmp_path / "r", 1)["temperature"])
