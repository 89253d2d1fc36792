"""The confusion histogram: hand-checked counts, top-1 against top-5, cropping, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from epochscope.analysis import confusion as histogram
from epochscope.analysis.confusion import confusion, crop
from epochscope.cache import ByteLRU

# 3 images, 4 classes; top-5 with repeats allowed only where a real file could not have them
LABELS = np.array([0, 1, 1])
TOP5 = np.array(
    [
        [0, 1, 2, 3, 3],  # image 0 (true 0): right first
        [2, 1, 0, 3, 3],  # image 1 (true 1): wrong first, right second
        [1, 2, 3, 0, 0],  # image 2 (true 1): right first
    ]
)


def test_top1_counts_first_guesses_only() -> None:
    conf = confusion(LABELS, TOP5, 4, "top1")
    expected = np.zeros((4, 4), dtype=np.int32)
    expected[0, 0] = 1
    expected[1, 2] = 1
    expected[1, 1] = 1
    assert np.array_equal(conf.dense(), expected)
    assert conf.images.tolist() == [1, 2, 0, 0]
    assert conf.diagonal().tolist() == [1, 1, 0, 0]


def test_top5_counts_every_guess() -> None:
    conf = confusion(LABELS, TOP5, 4, "top5")
    m = conf.dense()
    assert m.sum() == 15  # 3 images x 5 guesses
    assert m[0].tolist() == [1, 1, 1, 2]
    assert m[1].tolist() == [3, 2, 2, 3]  # class 0 guessed by image 1 once, image 2 twice
    assert m[2:].sum() == 0
    assert conf.count(1, 0) == 3 and conf.count(3, 3) == 0
    assert conf.share(1, 1) == pytest.approx(1.0)  # both images of class 1 have it in the top-5
    assert conf.share(2, 2) == 0.0  # no images: no division by zero


def test_sparse_path_equals_bincount_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 50, 2000)
    top5 = rng.integers(0, 50, (2000, 5))
    dense = confusion(labels, top5, 50, "top5")
    monkeypatch.setattr(histogram, "BINCOUNT_CELLS", 0)  # force np.unique
    sparse = confusion(labels, top5, 50, "top5")
    assert np.array_equal(dense.dense(), sparse.dense())
    assert np.array_equal(dense.keys, sparse.keys) and np.all(np.diff(sparse.keys) > 0)


def test_out_of_range_guesses_are_dropped_not_miscounted() -> None:
    conf = confusion(np.array([0]), np.array([[0, -1, 7, 1, 1]]), 2, "top5")
    assert conf.dense().tolist() == [[1, 2], [0, 0]]


def test_bad_mode_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        confusion(LABELS, TOP5, 4, "top3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        confusion(LABELS[:2], TOP5, 4, "top5")


def test_crop_keeps_cells_in_the_display_range() -> None:
    conf = confusion(LABELS, TOP5, 4, "top5")
    reverse = np.array([3, 2, 1, 0])  # positions: class c at slot 3 - c
    part = crop(conf, reverse, (2, 4), (2, 4))  # slots 2-3 = classes 1 and 0 on both axes
    assert {(int(r), int(c)) for r, c in zip(part.rows, part.cols, strict=True)} == {
        (0, 0), (0, 1), (1, 0), (1, 1)
    }  # fmt: skip
    assert part.counts.sum() == 1 + 1 + 3 + 2
    # a fractional range includes the partly visible slot
    assert crop(conf, reverse, (2.5, 3.2), (1.5, 2.4)).counts.sum() == conf.count(
        1, 0
    ) + conf.count(1, 1) + conf.count(2, 0) + conf.count(2, 1)


def test_byte_lru_evicts_least_recent_and_keeps_the_new_value() -> None:
    cache = ByteLRU(max_bytes=250)
    calls = []

    def make(i: int):
        calls.append(i)
        return np.zeros(100, dtype=np.uint8)

    for i in (1, 2):
        cache.get(i, lambda i=i: make(i))
    cache.get(1, lambda: make(1))  # hit: 1 is now the most recent
    cache.get(3, lambda: make(3))  # 300 bytes > 250: evicts 2
    assert calls == [1, 2, 3]
    cache.get(1, lambda: make(1))
    cache.get(2, lambda: make(2))
    assert calls == [1, 2, 3, 2]
    assert cache.nbytes <= 250
    big = ByteLRU(max_bytes=10)
    assert big.get("x", lambda: np.zeros(100)).size == 100 and len(big) == 1
