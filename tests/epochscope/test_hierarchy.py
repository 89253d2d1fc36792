"""Any taxonomy: a run's own hierarchy.tsv gives order, bands and relatedness (CIFAR-100's 20
superclasses here), WordNet stays for ImageNet, and a run with neither gets the clustered order.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

import epochscope
from dashboard.confusion import data, service
from epochscope.hierarchy import Taxonomy, as_taxonomy, read_hierarchy

REPO = Path(__file__).resolve().parents[2]
CIFAR100 = REPO / "assets" / "cifar100" / "hierarchy.tsv"
# four superclasses' classes, interleaved so that index order is not the hierarchy order
SUPER = {
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
}
CLASSES = [c for five in zip(*SUPER.values(), strict=True) for c in five]
BAND_NAMES = ["fish", "flowers", "trees", "vehicles 1"]  # in the file's order


def test_cifar100_hierarchy_has_20_bands_of_five() -> None:
    tax = Taxonomy.read(CIFAR100)
    assert len(tax.band_names()) == 20 and len(tax) == 120
    assert tax.band_of("apple") == "fruit and vegetables"
    assert tax.band_of("pickup_truck") == "vehicles 1"
    assert tax.distance("rose", "tulip") == 2  # siblings
    assert tax.distance("rose", "trout") == 4  # through the virtual root above the 20
    order = tax.display_order(CLASSES)
    bands = [tax.band_of(CLASSES[i]) for i in order]
    assert bands == [b for b in BAND_NAMES for _ in range(5)]
    assert tax.display_order(["not_there", "rose"]).tolist() == [1, 0]


def test_hierarchy_shapes_and_refusals(tmp_path: Path) -> None:
    # one root over everything: its children are the bands
    tree = as_taxonomy({"cat": "felines", "lion": "felines", "dog": "canines",
                        "felines": "animals", "canines": "animals"})  # fmt: skip
    assert tree.band_of("lion") == "felines" and tree.band_of("dog") == "canines"
    assert tree.distance_matrix(["cat", "lion", "dog", "x"]).tolist()[0] == [0, 2, 4, 255]
    with pytest.raises(ValueError, match="cycle"):
        as_taxonomy({"a": "b", "b": "c", "c": "a"})
    with pytest.raises(ValueError, match="hierarchy: no file"):
        as_taxonomy(tmp_path / "missing.tsv")
    with pytest.raises(ValueError, match="hierarchy must be"):
        as_taxonomy(42)
    bad = tmp_path / "bad.tsv"
    bad.write_text("child\tparent\nx\ty\n")
    with pytest.raises(ValueError, match="header"):
        Taxonomy.read(bad)
    # round trip through the TSV the run directory holds
    (tmp_path / "hierarchy.tsv").write_bytes(tree.tsv())
    again = read_hierarchy(tmp_path)
    assert again.band_of("cat") == "felines" and again.parents("felines") == ("animals",)


def _confused_run(runs: Path, name: str, classes: list[str], hierarchy=None) -> Path:
    """Two epochs whose wrong guesses stay mostly inside the true class's superclass."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(classes)), 6)
    tax = Taxonomy.read(CIFAR100)
    band = np.array([tax.band_of(c) if c in tax else "" for c in classes])
    with epochscope.init(name, runs, classes=classes, val_labels=labels,
                         hierarchy=hierarchy, image_size=8) as run:  # fmt: skip
        for epoch in (1, 2):
            logits = rng.normal(0, 1, (len(labels), len(classes)))
            logits[np.arange(len(labels)), labels] += 1.5 * epoch
            logits += 2.0 * (band[labels][:, None] == band[None, :])  # siblings look alike
            run.log_predictions(epoch, logits)
            run.log_epoch(epoch, train_loss=1.0 / epoch)
    return runs / name


def test_dashboard_uses_the_runs_hierarchy(tmp_path: Path) -> None:
    run_dir = _confused_run(tmp_path, "c20", CLASSES, hierarchy=CIFAR100)
    data.clear()
    meta = data.run(run_dir)
    assert isinstance(meta.hierarchy, Taxonomy)
    assert meta.bands[:4] == BAND_NAMES
    order = data.run(run_dir).order("wordnet")
    assert [meta.bands[i] for i in order] == [b for b in BAND_NAMES for _ in range(5)]
    bands = service.bands_for(data.run(run_dir), "wordnet")
    assert [b.name for b in bands] == BAND_NAMES and [b.stop for b in bands] == [5, 10, 15, 20]
    view = service.matrix_view(data.run(run_dir), 2, "top5", "wordnet", "eq_hist", (0, 20), (20, 0))
    assert "hierarchy order" in view.figure["layout"]["title"]["text"]
    assert set(view.figure["layout"]["xaxis"]["ticktext"]) == set(BAND_NAMES)
    assert set(view.figure["layout"]["yaxis"]["ticktext"]) == set(BAND_NAMES)
    # zoomed in, the classes themselves are named (in display order)
    zoom = service.matrix_view(data.run(run_dir), 2, "top5", "wordnet", "eq_hist", (0, 5), (5, 0))
    assert zoom.figure["layout"]["xaxis"]["ticktext"] == [meta.names[i] for i in order[:5]]
    _, values = data.run(run_dir).relatedness_series()
    last = values[-1]
    assert last.source == "hierarchy" and last.wrong > 0
    assert last.same_band > 2 * last.chance_same_band  # the mistakes stay in the superclass
    assert [b for b, _, _ in last.by_band] == BAND_NAMES
    # only the run's own classes count: 4 bands of 5, so chance is 4/19 of other classes
    assert last.chance_same_band == pytest.approx(4 / 19)


def test_without_a_hierarchy_the_default_order_is_clustered(tmp_path: Path) -> None:
    run_dir = _confused_run(tmp_path, "plain", CLASSES)
    data.clear()
    meta = data.run(run_dir)
    assert meta.hierarchy is None and not meta.has_bands
    assert data.run(run_dir).effective_order("wordnet") == "cluster"
    assert np.array_equal(data.run(run_dir).order("wordnet"), data.run(run_dir).order("cluster"))
    view = service.matrix_view(data.run(run_dir), 2, "top5", "wordnet", "eq_hist", (0, 20), (20, 0))
    assert "clustered order" in view.figure["layout"]["title"]["text"]
    # the clustering finds the superclasses from the confusions alone: each band contiguous
    tax = Taxonomy.read(CIFAR100)
    seq = [tax.band_of(CLASSES[i]) for i in data.run(run_dir).order("wordnet")]
    changes = sum(a != b for a, b in itertools.pairwise(seq))
    assert changes == 3


def test_imagenet_wnids_still_get_wordnet(tmp_path: Path) -> None:
    wnids = [("n02123045", "tabby"), ("n01440764", "tench"), ("n02124075", "Egyptian cat")]
    with epochscope.init("inet", tmp_path, classes=wnids, val_labels=[0, 1, 2]) as run:
        run.log_predictions(1, np.eye(3))
        run.log_epoch(1)
    data.clear()
    meta = data.run(tmp_path / "inet")
    assert meta.bands == ["cat", "fish", "cat"]
    assert data.run(tmp_path / "inet").effective_order("wordnet") == "wordnet"
    assert data.run(tmp_path / "inet").order("wordnet").tolist() == [1, 0, 2]  # fish before cats
    _, values = data.run(tmp_path / "inet").relatedness_series()
    assert values[-1].source == "WordNet"


@pytest.mark.browser
def test_custom_hierarchy_bands_on_both_axes_and_in_relatedness(
    tmp_path: Path, dashboard_server, browser_page, output_dir: Path
) -> None:
    _confused_run(tmp_path, "c20", CLASSES, hierarchy=CIFAR100)
    base = dashboard_server(tmp_path)
    page = browser_page
    page.goto(f"{base}/confusion?run=c20")
    axes_js = """() => {
        const gd = document.querySelector('#confusion-graph .js-plotly-plot');
        if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) return null;
        const ticks = (sel) => [...gd.querySelectorAll(sel)].map(t => t.textContent);
        return {x: ticks('.xtick text'), y: ticks('.ytick text'), title: gd.layout.title.text};
    }"""
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(axes_js)
        if state and set(BAND_NAMES) <= set(state["x"]):
            break
        time.sleep(0.2)
    assert state and set(BAND_NAMES) <= set(state["x"]), state
    assert set(BAND_NAMES) <= set(state["y"]), state
    assert "hierarchy order" in state["title"]
    bars_js = """() => {
        const gd = document.querySelector('#confusion-relatedness .js-plotly-plot');
        if (!gd) return null;
        return [...gd.querySelectorAll('.yaxislayer-above .ytick text, .y3tick text')]
            .map(t => t.textContent);
    }"""
    deadline = time.monotonic() + 30
    shown: list[str] = []
    while time.monotonic() < deadline:
        shown = page.evaluate(bars_js) or []
        if set(BAND_NAMES) <= set(shown):
            break
        time.sleep(0.2)
    assert set(BAND_NAMES) <= set(shown), shown
    assert "hierarchy" in page.inner_text("#confusion-relatedness")
    page.screenshot(path=str(output_dir / "confusion-custom-hierarchy.png"), full_page=True)


@pytest.mark.slow
def test_trainer_copies_its_hierarchy_into_the_run(demo_data: Path, tmp_path: Path) -> None:
    from conftest import TINY_TRAIN_ARGS, run_cli

    wnids = sorted(p.name for p in (demo_data / "train").iterdir())
    groups = tmp_path / "groups.tsv"
    groups.write_text(
        "id\tparent\tname\nfirst\t\tfirst half\nsecond\t\tsecond half\n"
        + "".join(f"{w}\t{'first' if i < 10 else 'second'}\t{w}\n" for i, w in enumerate(wnids))
    )
    runs = tmp_path / "runs"
    bad = tmp_path / "loop.tsv"
    bad.write_text("id\tparent\tname\na\tb\ta\nb\ta\tb\n")
    proc = run_cli(
        "trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs),
        "--name", "h", "--hierarchy", str(bad), *TINY_TRAIN_ARGS, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--hierarchy" in proc.stderr and "cycle" in proc.stderr
    assert not (runs / "h").exists()  # refused before anything was written
    run_cli("trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs), "--name", "h",
            "--hierarchy", str(groups), *TINY_TRAIN_ARGS, "--epochs", "1")  # fmt: skip
    assert read_hierarchy(runs / "h").band_of(wnids[0]) == "first half"
    data.clear()
    meta = data.run(runs / "h")
    assert set(meta.bands) == {"first half", "second half"}  # the run's own, not WordNet's
    assert [b.name for b in service.bands_for(data.run(runs / "h"), "wordnet")] == [
        "first half", "second half"
    ]  # fmt: skip
