"""The synthetic demo dataset: layout, determinism, safety, and its WordNet-shaped look."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epochscope.catalogue import ANIMAL_WNID, DOG_WNID, load_catalogue
from tests.conftest import TINY_CLASSES, run_cli
from trainer import demo_data

TABBY = "n02123045"
CAT_WNID = "n02121620"  # cat, the feline (not the big cats)
BIRD_WNID = "n01503061"


def make(out: Path, *args: str) -> int:
    return demo_data.main([str(out), "--quiet", *args])


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def under(wnids: list[str], synset: str) -> list[str]:
    cat = load_catalogue()
    return [w for w in wnids if synset in cat.ancestors(w)]


# --- layout -------------------------------------------------------------------------------------
def test_layout_counts_and_real_jpegs(demo_data: Path) -> None:
    marker = json.loads((demo_data / "demo.json").read_text())
    wnids = marker["wnids"]
    assert len(wnids) == TINY_CLASSES == marker["counts"]["classes"]
    assert marker["synthetic"] is True
    assert marker["counts"] == {"classes": 20, "train": 800, "val": 200}
    for split, per_class in (("train", 40), ("val", 10)):
        assert sorted(p.name for p in (demo_data / split).iterdir()) == sorted(wnids)
        for wnid in wnids:
            names = sorted(p.name for p in (demo_data / split / wnid).iterdir())
            assert names == sorted(f"{wnid}_{k}.JPEG" for k in range(per_class))
    sample = demo_data / "val" / wnids[0] / f"{wnids[0]}_0.JPEG"
    assert sample.read_bytes()[:3] == b"\xff\xd8\xff"  # a real JPEG, not a renamed PNG
    with Image.open(sample) as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (32, 32))
    readme = (demo_data / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "not imagenet photos" in readme.lower()


def test_small_selection_spans_the_hierarchy() -> None:
    cat = load_catalogue()
    for n in (20, 30, 100):
        wnids = demo_data.choose_classes(cat, n)
        assert len(set(wnids)) == n and wnids == demo_data.choose_classes(cat, n)
        assert TABBY in wnids
        assert len(under(wnids, DOG_WNID)) >= 3
        assert len(under(wnids, CAT_WNID)) >= 2
        assert len(under(wnids, BIRD_WNID)) >= 1
        assert len(wnids) - len(under(wnids, ANIMAL_WNID)) >= n // 3  # plenty of objects
    assert demo_data.choose_classes(cat, 1000) == [c.wnid for c in cat.classes]


# --- determinism and safety ---------------------------------------------------------------------
def test_same_options_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    opts = ("--classes", "5", "--train-per-class", "3", "--val-per-class", "2", "--seed", "3")
    assert make(tmp_path / "a", *opts, "--workers", "1") == 0
    assert make(tmp_path / "b", *opts, "--workers", "2") == 0
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert len(a) == 5 * 5 + 2 and a == b
    assert make(tmp_path / "c", *opts[:-1], "4", "--workers", "1") == 0
    c = files(tmp_path / "c")
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".JPEG"))  # another seed, other images


def test_if_missing_keeps_a_complete_dataset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    opts = ("--classes", "3", "--train-per-class", "2", "--val-per-class", "1")
    assert make(out, *opts) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    started = time.perf_counter()
    assert make(out, *opts, "--if-missing") == 0
    assert time.perf_counter() - started < 1.0
    assert "already" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    # other options, or a file gone: --if-missing makes it again (over the old demo dataset)
    assert make(out, "--classes", "4", "--train-per-class", "2", "--val-per-class", "1",
                "--if-missing") == 0  # fmt: skip
    assert json.loads((out / "demo.json").read_text())["counts"]["classes"] == 4
    next(out.glob("val/*/*.JPEG")).unlink()
    assert not demo_data.is_complete(out, demo_data.Options(4, 2, 1, 32, 0))
    assert make(out, "--classes", "4", "--train-per-class", "2", "--val-per-class", "1",
                "--if-missing") == 0  # fmt: skip
    assert demo_data.is_complete(out, demo_data.Options(4, 2, 1, 32, 0))


def test_a_killed_generation_leaves_no_dataset_and_is_cleaned_up(tmp_path: Path) -> None:
    dead = tmp_path / ".demo.tmp-999999999"  # what a killed run leaves: no marker, not at OUT
    (dead / "train" / TABBY).mkdir(parents=True)
    assert not demo_data.is_complete(tmp_path / "demo", demo_data.Options(2, 1, 1, 32, 0))
    assert make(tmp_path / "demo", "--classes", "2", "--train-per-class", "1",
                "--val-per-class", "1") == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"precious")
    proc = run_cli("trainer", "make-demo-data", str(tmp_path), "--classes", "2", check=False)
    assert proc.returncode == 2
    assert "not a demo dataset" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.jpg"]
    assert (tmp_path / "holiday.jpg").read_bytes() == b"precious"
    # an empty folder is fine to fill
    (tmp_path / "empty").mkdir()
    assert make(tmp_path / "empty", "--classes", "1", "--train-per-class", "1",
                "--val-per-class", "1") == 0  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "0"], "--classes must be 1..1000"),
        (["--classes", "1001"], "--classes must be 1..1000"),
        (["--image-size", "4"], "--image-size must be"),
        (["--train-per-class", "0"], "at least 1"),
        (["--classes", "many"], "invalid int value"),
    ],
)
def test_bad_arguments(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert make(tmp_path / "demo", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_help_says_synthetic(capsys) -> None:
    assert demo_data.main(["--help"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out


def test_contact_sheet(tmp_path: Path) -> None:
    path = tmp_path / "sheet.png"
    assert demo_data.main(["--contact-sheet", str(path)]) == 0
    with Image.open(path) as im:
        rows = len(demo_data.SHEET_CLASSES)
        assert im.size[1] == rows * (32 * 4 + 4) and im.size[0] > 6 * 32 * 4


# --- the hierarchy shows ------------------------------------------------------------------------
def features(images: np.ndarray) -> np.ndarray:
    """8x8 colour thumbnail plus a 4x4x4 colour histogram: what a nearest-mean probe sees."""
    x = images.astype(np.float32) / 255
    n, s = x.shape[:2]
    thumb = x.reshape(n, 8, s // 8, 8, s // 8, 3).mean((2, 4)).reshape(n, -1)
    q = np.minimum((x * 4).astype(np.int64), 3)
    bins = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).reshape(n, -1)
    hist = np.stack([np.bincount(b, minlength=64) for b in bins]) / (s * s)
    return np.concatenate([thumb, 3 * hist], axis=1)


def load_split(root: Path, split: str, wnids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for label, wnid in enumerate(wnids):
        for p in sorted((root / split / wnid).iterdir()):
            with Image.open(p) as im:
                xs.append(np.asarray(im.convert("RGB")))
            ys.append(label)
    return np.stack(xs), np.array(ys)


def test_siblings_are_confused_far_more_than_strangers(tmp_path: Path) -> None:
    n, per_val = 30, 20
    root = tmp_path / "demo"
    assert make(root, "--classes", str(n), "--train-per-class", "30",
                "--val-per-class", str(per_val), "--workers", "2") == 0  # fmt: skip
    wnids = json.loads((root / "demo.json").read_text())["wnids"]
    x_train, y_train = load_split(root, "train", wnids)
    x_val, y_val = load_split(root, "val", wnids)
    f_train, f_val = features(x_train), features(x_val)
    means = np.stack([f_train[y_train == k].mean(axis=0) for k in range(n)])
    pred = ((f_val[:, None, :] - means[None]) ** 2).sum(axis=-1).argmin(axis=1)

    accuracy = float((pred == y_val).mean())
    assert 3 / n < accuracy < 0.8, accuracy  # learnable, but far from trivially separable

    confusion = np.zeros((n, n))
    np.add.at(confusion, (y_val, pred), 1 / per_val)
    distance = load_catalogue().distance_matrix(wnids).astype(int)
    off_diagonal = ~np.eye(n, dtype=bool)
    close, far = off_diagonal & (distance <= 4), off_diagonal & (distance > 4)
    assert close.sum() >= 10  # several sibling pairs: cats, dogs, cars
    close_rate, far_rate = confusion[close].mean(), confusion[far].mean()
    assert close_rate > 3 * far_rate, (close_rate, far_rate)


def test_dog_breeds_look_alike_objects_do_not() -> None:
    """Genome distance: two dog breeds are closer than two objects of the same band."""
    cat = load_catalogue()

    def gap(a: str, b: str) -> float:
        ga, gb = (demo_data.make_genome(cat, w).traits for w in (a, b))
        return float(np.mean([abs(ga[k] - gb[k]) for k in demo_data.RANGES]))

    dogs = gap("n02085620", "n02110958")  # Chihuahua, pug (different breed groups)
    dog_cat = gap("n02085620", TABBY)
    objects = gap("n03063599", "n04254680")  # coffee mug, soccer ball
    assert dogs < dog_cat < objects, (dogs, dog_cat, objects)


def test_generation_is_fast_enough() -> None:
    """Draw 20 classes x 36 images in-process: the whole 1000-class set must take < 60 s."""
    cat = load_catalogue()
    genomes = [demo_data.make_genome(cat, w) for w in demo_data.choose_classes(cat, 20)]
    started = time.perf_counter()
    for g in genomes:
        demo_data.render_class(g, 36, 32, 0, "train")
    per_class = (time.perf_counter() - started) / len(genomes)
    assert per_class * 1000 / max(1, min(2, os.cpu_count() or 1)) < 40, per_class
