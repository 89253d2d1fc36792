"""Per-image training statistics: recorded by the public API from the training step's logits,
stored compactly by training index, read back bounded, and summarised as AUM, the data map,
forgetting events and a ranking of likely mislabeled training images."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import open_run
from epochscope.analysis.training_dynamics import ranking, summarise, threshold_cut
from epochscope.reader import load_train_stats
from epochscope.train_labels import TrainStatsMissing
from epochscope.training_stats import batch_stats, dense
from tests.support import make_train_stats_run


def _reference(p: np.ndarray, m: np.ndarray, o: np.ndarray) -> dict[str, list]:
    """The statistics of one image over epochs, by plain loops (NaN / -1: not seen)."""
    seen = [e for e in range(len(p)) if not np.isnan(p[e])]
    ps = [float(p[e]) for e in seen]
    right = [float(m[e]) > 0 for e in seen]
    votes: dict[int, int] = {}
    for e in seen:
        votes[int(o[e])] = votes.get(int(o[e]), 0) + 1
    return {
        "aum": float(np.mean([m[e] for e in seen])),
        "confidence": float(np.mean(ps)),
        "variability": float(np.std(ps)),
        "correctness": float(np.mean(right)),
        "forgetting": sum(a and not b for a, b in itertools.pairwise(right)),
        "suggested": max(votes, key=lambda k: votes[k]),
    }


def test_batch_stats_are_the_given_label_probability_margin_and_best_other_class() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, 64)
    p, m, o = batch_stats(logits, labels)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for i in range(64):
        others = [c for c in range(7) if c != labels[i]]
        best = max(others, key=lambda c: logits[i, c])
        assert p[i] == pytest.approx(softmax[i, labels[i]], rel=1e-5)
        assert m[i] == pytest.approx(logits[i, labels[i]] - logits[i, best], abs=1e-5)
        assert o[i] == best
    tp, tm, to = batch_stats(torch.from_numpy(logits), torch.from_numpy(labels))
    np.testing.assert_allclose(tp.numpy(), p, rtol=1e-5)
    np.testing.assert_allclose(tm.numpy(), m, atol=1e-5)
    np.testing.assert_array_equal(to.numpy(), o)
    # what the trainer passes instead of a second pass: the loss and its top-5
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    nll = torch.nn.functional.cross_entropy(t_logits, t_labels, reduction="none")
    sp, sm, so = batch_stats(t_logits, t_labels, nll=nll, top=t_logits.topk(5, dim=1))
    np.testing.assert_allclose(sp.numpy(), p, rtol=1e-5)
    np.testing.assert_allclose(sm.numpy(), m, atol=1e-5)
    np.testing.assert_array_equal(so.numpy(), o)


def test_summaries_over_epochs_match_a_plain_loop_unseen_epochs_skipped() -> None:
    rng = np.random.default_rng(1)
    epochs, n, c = 7, 300, 5
    p = rng.uniform(0, 1, (epochs, n))
    m = rng.normal(size=(epochs, n))
    o = rng.integers(0, c, (epochs, n))
    unseen = rng.uniform(size=(epochs, n)) < 0.15  # a sampler's dropped last batch, say
    p[unseen], m[unseen], o[unseen] = np.nan, np.nan, -1
    o[:, :50] = 3  # a clear favourite for the first images: the vote must find it
    o[unseen] = -1
    d = summarise(((e + 1, {"p_label": p[e], "margin": m[e], "other": o[e]})
                   for e in range(epochs)), n)  # fmt: skip
    assert d.epochs == tuple(range(1, epochs + 1))
    for i in range(n):
        if unseen[:, i].all():
            continue
        want = _reference(p[:, i], m[:, i], o[:, i])
        assert d.aum[i] == pytest.approx(want["aum"], abs=1e-5)
        assert d.confidence[i] == pytest.approx(want["confidence"], abs=1e-5)
        assert d.variability[i] == pytest.approx(want["variability"], abs=1e-4)
        assert d.correctness[i] == pytest.approx(want["correctness"], abs=1e-6)
        assert d.forgetting[i] == want["forgetting"]
        if i < 50:
            assert d.suggested[i] == 3 == want["suggested"]


@pytest.mark.parametrize("as_torch", [False, True])
def test_the_api_records_training_statistics_and_the_ranking_finds_moved_labels(
    tmp_path: Path, as_torch: bool
) -> None:
    if as_torch:
        pytest.importorskip("torch")
    run_dir, planted = make_train_stats_run(tmp_path, "dyn", as_torch=as_torch)
    files = sorted((run_dir / "train_stats").glob("epoch-*.npz"))
    assert [f.name for f in files] == ["epoch-0001.npz", "epoch-0002.npz", "epoch-0003.npz"]
    with np.load(files[0]) as z:  # compact: float16 statistics, int16 classes
        assert z["p_label"].dtype == np.float16 and z["other"].dtype == np.int16
        assert np.isnan(z["p_label"]).sum() == 400 - 384  # drop_last left 16 unseen
    run = open_run(run_dir)
    issues = run.training_label_issues()
    assert len(issues) == 400
    assert set(issues["index"][:40]) == set(planted.tolist())
    assert issues["path"][0].startswith("train/") and issues["score"].is_monotonic_decreasing
    top = issues.iloc[0]
    assert top["suggested"] != top["label"] and top["aum"] < 0
    assert issues["confidence"].dropna().is_monotonic_increasing  # the ranking's order
    data_map = run.data_map(first=2)
    assert len(data_map) == 400 and set(data_map["band"]) <= {"easy", "ambiguous", "hard", "unseen"}
    assert (data_map["band"] == "unseen").sum() == (data_map["epochs_seen"] == 0).sum()
    assert data_map["epochs_seen"].max() == 2  # epochs 2 and 3 only
    assert data_map.loc[planted, "confidence"].mean() < 0.3 < data_map["confidence"].mean()


def test_a_limited_ranking_is_the_first_rows_of_the_whole_one_ties_included() -> None:
    """The partition a cold worker ranks with gives what the full sort gives: float16
    probabilities over few epochs tie often, and ties go by AUM, then index."""
    rng = np.random.default_rng(5)
    n, classes = 5_000, 7
    pairs = []
    for epoch in (1, 2):
        p = rng.choice([0.1, 0.25, 0.5, 0.75], n).astype(np.float16).astype(np.float32)
        m = rng.choice([-1.0, 0.0, 1.0], n).astype(np.float32)
        other = rng.integers(0, classes, n)
        unseen = rng.uniform(size=n) < 0.1
        p[unseen], m[unseen], other[unseen] = np.nan, np.nan, -1
        pairs.append((epoch, {"p_label": p, "margin": m, "other": other}))
    d = summarise(pairs, n)
    whole = ranking(d)
    for limit in (0, 1, 24, 100, 1_777, n - 1, n, n + 5):
        assert np.array_equal(ranking(d, limit=limit), whole[:limit]), limit
    among = np.flatnonzero(d.suggested == 3)
    filtered = whole[np.isin(whole, among)]
    for limit in (None, 10, len(among)):
        got = ranking(d, limit=limit, among=among)
        assert np.array_equal(got, filtered[:limit]), limit


def test_the_threshold_cut_is_the_99th_percentile_of_the_threshold_samples_aum() -> None:
    rng = np.random.default_rng(3)
    n = 1_000
    m = rng.normal(size=n).astype(np.float32)
    m[:10] = np.nan  # never seen: left out of the percentile
    p = np.where(np.isnan(m), np.nan, 0.5).astype(np.float32)
    other = np.where(np.isnan(m), -1, 1)
    d = summarise([(1, {"p_label": p, "margin": m, "other": other})], n)
    rows = np.arange(0, 200)
    assert threshold_cut(d, rows) == pytest.approx(float(np.percentile(m[10:200], 99)))
    assert threshold_cut(d, np.arange(10)) is None  # none of them seen


def test_a_run_without_training_statistics_says_why(tmp_path: Path) -> None:
    labels = np.arange(10) % 2
    with epochscope.init("plain", tmp_path, classes=["a", "b"], val_labels=labels) as run:
        run.log_predictions(1, np.eye(2)[labels])
        run.log_epoch(1)
        with pytest.raises(ValueError, match="train_labels"):
            run.log_train_batch(np.arange(2), np.zeros((2, 2)))
    with pytest.raises(TrainStatsMissing, match="log_train_batch"):
        open_run(tmp_path / "plain").training_label_issues()


def test_hostile_training_statistics_are_refused_unread(tmp_path: Path) -> None:
    run_dir, _ = make_train_stats_run(tmp_path, "dyn")
    path = run_dir / "train_stats" / "epoch-0002.npz"
    good = dense({"index": np.arange(400), "p_label": np.full(400, 0.5),
                  "margin": np.zeros(400), "other": np.zeros(400, int)}, 400, 4)  # fmt: skip
    for change, message in (
        ({"p_label": good["p_label"][:10]}, "p_label"),
        ({"other": np.full(400, 9, np.int16)}, "outside 0..3"),
        ({"p_label": np.full(400, 7.0, np.float16)}, "outside 0..1"),
        ({"margin": np.zeros((400, 2), np.float16)}, "margin"),
    ):
        np.savez(path, **{**good, **change})
        with pytest.raises(ValueError, match=message):
            load_train_stats(run_dir, 2, 400, 4)
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable training statistics"):
        open_run(run_dir).training_label_issues()
