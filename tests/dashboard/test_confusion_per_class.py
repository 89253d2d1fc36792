"""Per-class table, row-normalised and diagonal-free cells, difference matrices and class
search, checked against direct numpy computations from the predictions files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.synthetic_runs import write_run
from dashboard.confusion import data, service
from dashboard.confusion.difference import diverging_indices
from dashboard.confusion.figure import plot_size
from epochscope.analysis.confusion import cell_values, confusion, row_share
from epochscope.analysis.difference import ClassMismatch
from epochscope.analysis.per_class import class_stats
from epochscope.reader import load_predictions, read_classes, read_val_index


@pytest.fixture
def run(tmp_path: Path) -> Path:
    data.clear()
    return write_run(tmp_path / "a", num_classes=30, per_class=12, epochs=3, seed=1)


def _direct(labels: np.ndarray, top5: np.ndarray, c: int) -> dict[int, dict]:
    """Per class, one loop over its images: the reference the vectorised code must match."""
    out = {}
    for k in range(c):
        rows = np.flatnonzero(labels == k)
        wrong = Counter(int(top5[r, 0]) for r in rows if top5[r, 0] != k)
        out[k] = {
            "support": len(rows),
            "top1": float(np.mean(top5[rows, 0] == k)) if len(rows) else None,
            "top5": float(np.mean([k in top5[r] for r in rows])) if len(rows) else None,
            "confused": sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[:3],
        }
    return out


def test_per_class_numbers_match_a_direct_computation(run: Path) -> None:
    labels, _ = read_val_index(run)
    names = [n for _, _, n in read_classes(run)]
    c = len(names)
    rows = {r["index"]: r for r in service.class_table(data.run(run), 3, since=1)}
    ref = {e: _direct(labels, load_predictions(run, e, len(labels), c)[0], c) for e in (1, 2, 3)}
    assert len(rows) == c
    for k in range(c):
        r, want = rows[k], ref[3][k]
        assert r["support"] == want["support"] == 12
        assert r["top1"] == pytest.approx(100 * want["top1"], abs=0.05)
        assert r["top5"] == pytest.approx(100 * want["top5"], abs=0.05)
        assert r["d_prev"] == pytest.approx(100 * (want["top1"] - ref[2][k]["top1"]), abs=0.11)
        assert r["d_since"] == pytest.approx(100 * (want["top1"] - ref[1][k]["top1"]), abs=0.11)
        assert r["confused"] == ", ".join(f"{names[j]} ({n})" for j, n in want["confused"])
    # the synthetic model learns: some class must have changed, or the deltas prove nothing
    assert any(rows[k]["d_since"] for k in rows)


def test_class_without_images_reads_as_unknown_not_zero() -> None:
    labels = np.array([0, 0, 2])
    top5 = np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 0, 1, 3, 4]])
    s = class_stats(labels, top5, 4)
    assert list(s.support) == [2, 0, 1, 0]
    assert s.top1[0] == 0.5 and np.isnan(s.top1[1]) and s.top1[2] == 1.0
    assert s.top5[0] == 1.0
    assert list(s.confused[0]) == [1, -1, -1] and list(s.confused_counts[0]) == [1, 0, 0]


def test_band_accuracy_matches_masks(run: Path) -> None:
    meta = data.run(run)
    top5, _ = data.run(run).predictions(2)
    got = data.run(run).band_accuracy(2)
    hit = top5[:, 0] == meta.labels
    bands = np.array(meta.bands)[meta.labels]
    for band in set(meta.bands) - {""}:
        assert got[band] == pytest.approx(hit[bands == band].mean())
    groups = np.array(meta.groups)[meta.labels]
    assert {"animals", "objects"} <= set(got)
    assert got["animals"] == pytest.approx(hit[groups == "animals"].mean())


def test_row_normalised_and_hidden_diagonal_cells(run: Path) -> None:
    meta = data.run(run)
    top5, _ = data.run(run).predictions(3)
    conf = confusion(meta.labels, top5, meta.num_classes, "top5")
    dense = conf.dense().astype(float)
    rows, cols, values = cell_values(conf, hide_diagonal=True, norm="row")
    assert not np.any(rows == cols)
    assert len(rows) == np.count_nonzero(dense) - np.count_nonzero(np.diag(dense))
    off = dense.copy()
    np.fill_diagonal(off, 0)
    want = off / off.sum(axis=1, keepdims=True)  # share of the class's mistakes
    np.testing.assert_allclose(values, want[rows, cols])
    r, c = int(rows[0]), int(cols[0])
    assert row_share(conf, r, c, hide_diagonal=True) == pytest.approx(want[r, c])
    # with the diagonal: share of all the row's guesses (five a image in top-5)
    rows, cols, values = cell_values(conf, norm="row")
    np.testing.assert_allclose(values, (dense / dense.sum(axis=1, keepdims=True))[rows, cols])


def test_difference_of_two_epochs_and_two_runs(run: Path, tmp_path: Path) -> None:
    meta = data.run(run)
    c = meta.num_classes
    dense = {}
    for e in (1, 3):
        top5, _ = data.run(run).predictions(e)
        dense[e] = confusion(meta.labels, top5, c, "top5").dense() / 12.0
    pts = data.difference_points(data.run(run), 3, data.run(run), 1, "top5", "index")
    got = np.zeros((c, c))
    frame = pts.frame
    got[(frame["y"] - 0.5).astype(int), (frame["x"] - 0.5).astype(int)] = frame["n"]
    np.testing.assert_allclose(got, dense[3] - dense[1], atol=1e-6)
    assert (frame["n"] != 0).all()  # unchanged cells are not drawn

    view = service.matrix_view(
        data.run(run),
        3,
        "top5",
        "wordnet",
        "eq_hist",
        (0, c),
        (0, c),
        compare=service.Compare(data.run(run), 1),
    )
    assert "minus" in view.figure["layout"]["title"]["text"]
    # a run with other classes is refused with both names and what differs
    other = write_run(tmp_path / "b", num_classes=20, per_class=5, epochs=1)
    with pytest.raises(ClassMismatch, match=r"cannot compare a with b: .*30 classes.*20"):
        data.difference_points(data.run(run), 3, data.run(other), 1, "top5", "index")
    with pytest.raises(ClassMismatch):
        service.class_table(data.run(run), 3, compare=service.Compare(data.run(other), 1))


def test_diverging_colours_are_symmetric() -> None:
    agg = np.array([[np.nan, -0.5, 0.5], [0.0, 0.125, -0.125]])
    idx, bar = diverging_indices(agg)
    assert idx[0, 0] == 0 and idx[1, 0] == 0  # empty and unchanged: nothing drawn
    assert idx[0, 1] == 1 and idx[0, 2] == 255
    assert int(idx[1, 1]) + int(idx[1, 2]) == 256
    assert bar.vmin == -0.5 and bar.vmax == 0.5


def test_find_classes_and_zoom(run: Path) -> None:
    meta = data.run(run)
    name, wnid = meta.names[7], meta.wnids[7]
    assert service.find_classes(data.run(run), name.upper())[0] == 7
    assert service.find_classes(data.run(run), wnid) == [7]
    assert service.find_classes(data.run(run), "no such class zzz") == []
    x, y = service.zoom_to_class(data.run(run), "wordnet", 7)
    slot = data.run(run).positions("wordnet")[7]
    assert (
        x == y and x[0] <= slot < x[1] and x[1] - x[0] == 15
    )  # half of 30 classes (24 from 48 on)


def test_plot_size_follows_the_viewport() -> None:
    small, big = plot_size(1400, 1000), plot_size(1920, 1080)
    assert big[0] > small[0] and big[1] > small[1]
    assert all(320 <= v <= 2400 for v in (*small, *big))
    assert plot_size(1400, 1000, share=0.5)[0] < small[0]
