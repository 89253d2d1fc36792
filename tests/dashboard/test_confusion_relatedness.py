"""'Mistakes related to the true class' on hand-made cases, and its figure."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard.kit.relatedness import relatedness_figure
from epochscope.analysis.relatedness import relatedness, relations
from epochscope.catalogue import load_catalogue

TABBY, EGYPTIAN, TIGER_CAT = "n02123045", "n02124075", "n02123159"  # cats, siblings
CHIHUAHUA, TENCH, VOLCANO = "n02085620", "n01440764", "n09472597"
WNIDS = [TABBY, EGYPTIAN, TIGER_CAT, CHIHUAHUA, TENCH, VOLCANO]


def test_relations_of_known_classes() -> None:
    rel = relations([*WNIDS, "not_a_wnid"])
    assert rel.compact.tolist() == [0, 1, 2, 3, 4, 5, -1]
    assert rel.same_band[0, 1] and not rel.same_band[0, 3]
    assert rel.same_parent[0, 1] and rel.same_parent[0, 2]  # all three are "domestic cat"s
    assert not rel.same_parent[0, 3]
    cat = load_catalogue()
    assert rel.distance[0, 4] == cat.distance(TABBY, TENCH)
    assert rel.distance[0, 1] == 2


def test_relatedness_counts_only_wrong_guesses() -> None:
    rel = relations(WNIDS)
    labels = np.array([0, 0])
    top5 = np.array(
        [
            [0, 1, 2, 3, 4],  # right first; wrong: egyptian, tiger (cats), chihuahua, tench
            [5, 0, 1, 1, 1],  # wrong: volcano, egyptian x3
        ]
    )
    r = relatedness(labels, top5, rel)
    assert r.wrong == 8
    assert r.same_band == pytest.approx(5 / 8)  # egyptian x4, tiger x1
    assert r.same_parent == pytest.approx(5 / 8)
    cat = load_catalogue()
    d = [cat.distance(TABBY, w) for w in (EGYPTIAN, TIGER_CAT, CHIHUAHUA, TENCH, VOLCANO)]
    expected = (d[0] * 4 + d[1] + d[2] + d[3] + d[4]) / 8
    assert r.mean_distance == pytest.approx(expected)
    # top-1 only: image 0 is right, image 1's volcano is the one mistake
    r1 = relatedness(labels, top5, rel, mode="top1")
    assert (r1.wrong, r1.same_band, r1.mean_distance) == (1, 0.0, d[4])


def test_chance_levels_match_uniform_mistakes() -> None:
    rel = relations(WNIDS)
    # ordered pairs of distinct classes sharing a band: the three cats, 3 x 2 of 6 x 5
    r = relatedness(np.array([0]), np.array([[0, 0, 0, 0, 0]]), rel)
    assert r.chance_same_band == pytest.approx(6 / 30)
    assert math.isnan(r.same_band) and r.wrong == 0  # no mistakes: nothing to measure


def test_unknown_classes_are_left_out() -> None:
    rel = relations(["folder_a", "folder_b", TABBY])
    r = relatedness(np.array([0, 2]), np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 2]]), rel)
    assert r.wrong == 0 and math.isnan(r.mean_distance)


def test_relatedness_figure() -> None:
    rel = relations(WNIDS)
    rng = np.random.default_rng(0)
    values = [
        relatedness(rng.integers(0, 6, 50), rng.integers(0, 6, (50, 5)), rel) for _ in range(3)
    ]
    fig = relatedness_figure([1, 2, 3], values)
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert "in the true class's band" in names and "mean WordNet distance" in names
    assert len(fig.data) == 7  # three measures, their chance levels, the last epoch by band
    bands = {load_catalogue().band_of(w) for w in WNIDS}
    assert fig.data[6].type == "bar" and set(fig.data[6].y) <= bands
    assert list(fig.data[0].x) == [1, 2, 3]
    assert fig.data[4].yaxis == "y2"
