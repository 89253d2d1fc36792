from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from epochscope.catalogue import (
    ANIMAL_WNID,
    DATA_DIR,
    DOG_WNID,
    ROOT_WNID,
    Catalogue,
    load_catalogue,
)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


def test_known_indices(cat: Catalogue) -> None:
    assert len(cat) == 1000
    assert (cat.classes[0].wnid, cat.classes[0].name) == ("n01440764", "tench")
    assert cat.classes[281].wnid == "n02123045" and "tabby" in cat.classes[281].lemmas
    assert cat.classes[999].wnid == "n15075141"
    assert [c.index for c in cat.classes] == list(range(1000))
    assert len({c.name for c in cat.classes}) == 1000, "names must be unique to be labels"


def test_tabby_path_reaches_animal_and_entity(cat: Catalogue) -> None:
    path = cat.path_to_root("n02123045")
    names = [cat.synset_name(w) for w in path]
    assert names[:4] == ["tabby cat", "domestic cat", "cat", "feline"]
    assert ANIMAL_WNID in path and path[-1] == ROOT_WNID


def test_counts_under_dog_animal(cat: Catalogue) -> None:
    assert len(cat.descendants(DOG_WNID)) == 118
    assert len(cat.descendants(ANIMAL_WNID)) == 398


def test_two_parent_classes_have_two_rows() -> None:
    rows = (DATA_DIR / "hierarchy.tsv").read_text().splitlines()[1:]
    classes = {
        line.split("\t")[1] for line in (DATA_DIR / "classes.tsv").read_text().splitlines()[1:]
    }
    per_class: dict[str, int] = {}
    for row in rows:
        wnid = row.split("\t")[0]
        if wnid in classes:
            per_class[wnid] = per_class.get(wnid, 0) + 1
    assert set(per_class) == classes
    # WordNet 3.0 gives 37 of the 1000 classes a second parent (a graph, not a tree).
    assert sum(1 for n in per_class.values() if n == 2) == 37


def test_order_is_permutation_with_named_bands(cat: Catalogue) -> None:
    assert sorted(cat.order.tolist()) == list(range(1000))
    names = {b.name for b in cat.bands()}
    assert 10 <= len(names) <= 30
    assert {"dog", "cat", "bird", "fish", "vehicle", "clothing", "food and drink"} <= names
    # Animals come first, then objects; all 118 dogs sit in one contiguous band.
    animal = set(cat.descendants(ANIMAL_WNID))
    first = [int(i) in animal for i in cat.order[:390]]
    assert all(first)
    dog_runs = [b for b in cat.bands() if b.name == "dog"]
    assert len(dog_runs) == 1 and dog_runs[0].stop - dog_runs[0].start == 118


def test_distance(cat: Catalogue) -> None:
    tabby, tiger_cat, chihuahua, toilet_tissue = "n02123045", "n02123159", "n02085620", "n15075141"
    assert cat.distance(tabby, tabby) == 0
    assert cat.distance(tabby, tiger_cat) == 2  # siblings under domestic cat
    assert cat.distance(tabby, tiger_cat) < cat.distance(tabby, chihuahua)
    assert cat.distance(tabby, chihuahua) < cat.distance(tabby, toilet_tissue)
    d = cat.distance_matrix()
    assert d.shape == (1000, 1000) and (d == d.T).all() and (np.diag(d) == 0).all()
    assert d[281, 282] == 2 and d[281, 151] == cat.distance(tabby, chihuahua)


def test_display_order_of_subset(cat: Catalogue) -> None:
    wnids = ["n15075141", "n02123045", "n01440764", "not-a-wnid", "n02085620"]
    order = cat.display_order(wnids)
    assert [wnids[i] for i in order] == [
        "n01440764",
        "n02085620",
        "n02123045",
        "n15075141",
        "not-a-wnid",
    ]


@pytest.mark.wordnet
@pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.noun").exists(), reason="needs apt wordnet-base"
)
def test_regenerated_catalogue_matches_committed(tmp_path: Path) -> None:
    from assets.build_catalogue import build

    build(tmp_path)
    for name in ("classes.tsv", "hierarchy.tsv", "order.tsv"):
        assert (tmp_path / name).read_text() == (DATA_DIR / name).read_text(), name
