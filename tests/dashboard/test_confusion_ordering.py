"""Class orders (permutations; clustering finds planted blocks) and band layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from epochscope.analysis import ordering
from epochscope.analysis.bands import UNKNOWN, band_runs, class_bands, visible_runs
from epochscope.analysis.confusion import confusion
from epochscope.analysis.ordering import (
    class_order,
    cluster_order,
    is_permutation,
    positions,
    wordnet_order,
)
from epochscope.catalogue import load_catalogue


def planted_blocks(
    num_classes: int, block: int, seed: int = 0, per_class: int = 30, noise: float = 0.1
):
    """Classes shuffled, then confused only within blocks of ``block`` (plus some noise)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_classes)  # block b = perm[b*block:(b+1)*block]
    block_of = np.empty(num_classes, dtype=int)
    block_of[perm] = np.arange(num_classes) // block
    labels = np.repeat(np.arange(num_classes), per_class)
    members = perm.reshape(-1, block)
    top5 = members[block_of[labels][:, None], rng.integers(0, block, (len(labels), 5))]
    top5[:, 0] = labels
    noisy = rng.random(top5.shape) < noise
    top5[noisy] = rng.integers(0, num_classes, noisy.sum())
    return confusion(labels, top5, num_classes, "top5"), block_of


def _max_block_spread(order: np.ndarray, block_of: np.ndarray) -> int:
    pos = positions(order)
    return max(int(np.ptp(pos[block_of == b])) for b in np.unique(block_of))


@pytest.mark.parametrize("linkage_limit", [2500, 0])  # hierarchical, then the sparse fallback
def test_cluster_order_puts_planted_blocks_together(
    monkeypatch: pytest.MonkeyPatch, linkage_limit: int
) -> None:
    monkeypatch.setattr(ordering, "LINKAGE_LIMIT", linkage_limit)
    conf, block_of = planted_blocks(60, block=6)
    order = cluster_order(conf)
    assert is_permutation(order, 60)
    assert _max_block_spread(order, block_of) == 5  # each block on 6 consecutive slots
    # the index order of shuffled classes scatters them: the test can fail
    assert _max_block_spread(np.arange(60), block_of) > 20


def test_pairs_that_only_confuse_each_other_cluster() -> None:
    # 2-class blocks: without each row's own self-similarity their cosine would be 0
    conf, block_of = planted_blocks(20, block=2, noise=0.0)
    assert _max_block_spread(cluster_order(conf), block_of) == 1


def test_positions_invert_an_order() -> None:
    order = np.array([2, 0, 3, 1])
    pos = positions(order)
    assert pos.tolist() == [1, 3, 0, 2]
    assert np.array_equal(order[pos], np.arange(4))
    assert not is_permutation(np.array([0, 0, 1]), 3)


def test_wordnet_order_follows_the_catalogue_and_puts_unknown_last() -> None:
    cat = load_catalogue()
    tabby, chihuahua, tench = "n02123045", "n02085620", "n01440764"
    order = wordnet_order([tabby, "folder_x", chihuahua, tench])
    assert is_permutation(order, 4)
    # fish, then dogs, then cats in the catalogue's display order; unknown names last
    assert order.tolist() == [3, 2, 0, 1]
    whole = wordnet_order([c.wnid for c in cat.classes])
    assert np.array_equal(whole, cat.order)


def test_class_order_kinds() -> None:
    wnids = ["n02123045", "n02085620", "n01440764"]
    assert class_order("index", wnids).tolist() == [0, 1, 2]
    assert class_order("wordnet", wnids).tolist() == [2, 1, 0]
    with pytest.raises(ValueError):
        class_order("cluster", wnids)
    with pytest.raises(ValueError):
        class_order("alphabetical", wnids)  # type: ignore[arg-type]


def test_band_runs_along_an_order() -> None:
    wnids = ["n02123045", "n01440764", "n02085620", "n02124075", "unknown_folder"]
    names = class_bands(wnids)
    assert names == ["cat", "fish", "dog", "cat", UNKNOWN]
    runs = band_runs(names, wordnet_order(wnids))  # fish, dog, cat, cat, unknown
    assert [(b.name, b.start, b.stop) for b in runs] == [
        ("fish", 0, 1), ("dog", 1, 2), ("cat", 2, 4), (UNKNOWN, 4, 5)
    ]  # fmt: skip
    # index order splits the cats in two runs
    assert [b.name for b in band_runs(names, np.arange(5))] == ["cat", "fish", "dog", "cat", ""]
    # visible part of a zoomed range, cut to it, the unknown run not drawn
    vis = visible_runs(runs, 1.5, 5)
    assert [(b.name, b.start, b.stop) for b in vis] == [("dog", 1.5, 2), ("cat", 2, 4)]


def test_full_catalogue_bands_cover_every_slot_once() -> None:
    cat = load_catalogue()
    runs = band_runs(class_bands([c.wnid for c in cat.classes]), cat.order)
    assert runs[0].start == 0 and runs[-1].stop == 1000
    assert all(a.stop == b.start for a, b in itertools.pairwise(runs))
    assert {b.name for b in runs} >= {"dog", "bird", "cat", "vehicle"}
