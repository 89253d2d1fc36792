"""The input pipeline's parts: the loader decision, the batch crop, the in-memory cache loader,
the prepared store (write, read, damage) and its dataset, on real small JPEGs."""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer import fastdata, recipe
from trainer.augment import PaddedRandomCrop, ResizeCenterCrop
from trainer.datasets import DataError
from trainer.store import Store, is_store, write_store

MIB = 2**20


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """3 classes x 6 real-looking JPEGs of mixed sizes (one 40 x 30, the rest 32 x 32)."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    base = Image.fromarray(data.astronaut())
    for c, name in enumerate(("cat", "dog", "ship")):
        (root / name).mkdir()
        for i in range(6):
            img = base.rotate(30 * c + 5 * i).resize((40, 30) if i == 0 else (32, 32))
            img.save(root / name / f"{i}.jpg", quality=90)
    return root


def _args(**kw) -> argparse.Namespace:
    a = argparse.Namespace(recipe="auto", image_size=32, epochs=2, batch_size=4, stem="auto",
                           augment="auto", nesterov=None, norm_decay=None, lr=None,
                           weight_decay=None, label_smoothing=None, lr_schedule=None,
                           warmup_epochs=None, min_crop_scale=None, seed=0, workers=0,
                           cache="auto")  # fmt: skip
    for k, v in kw.items():
        setattr(a, k, v)
    return recipe.apply(a, set(kw))


# --- the decision ----------------------------------------------------------------------------
def test_plan_caches_small_images_that_fit_and_says_why():
    p = fastdata.plan("auto", "pad-crop", 6000, 32, budget=100 * MIB, prepared=False)
    assert p.loader == "memory-cache" and p.in_memory and "18 MiB decoded fit" in p.reason
    big = fastdata.plan("auto", "pad-crop", 6000, 32, budget=10 * MIB, prepared=True)
    assert big.loader == "prepared" and "exceed the cache budget of 10 MiB" in big.reason
    assert fastdata.plan("none", "pad-crop", 10, 32, 10**9, False).loader == "jpeg"
    rrc = fastdata.plan("auto", "resized-crop", 10, 224, 10**12, False)
    assert rrc.loader == "jpeg" and "resized-crop" in rrc.reason


def test_plan_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="needs --augment pad-crop"):
        fastdata.plan("memory", "resized-crop", 10, 32, 10**9, False)
    with pytest.raises(ValueError, match="unknown --cache"):
        fastdata.plan("disk", "pad-crop", 10, 32, 10**9, False)
    # --cache memory forces the cache past the budget
    assert fastdata.plan("memory", "pad-crop", 10**6, 32, 1, False).in_memory


def test_budget_is_shared_by_the_processes_of_a_machine():
    assert fastdata.memory_budget(1, available=8 * MIB) == 2 * MIB
    assert fastdata.memory_budget(4, available=8 * MIB) == MIB // 2


# --- the batch crop ----------------------------------------------------------------------------
def test_batch_crop_is_a_padded_crop_or_its_mirror():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = fastdata.pad_crop_flip(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen_flip = seen_plain = False
    for i in range(len(x)):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirror = any(torch.equal(out[i], w.flip(2)) for w in windows)
        assert plain or mirror, i
        seen_plain |= plain and not mirror
        seen_flip |= mirror and not plain
    assert seen_flip and seen_plain  # both happen in 64 draws
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_pil_steps_match_the_recipe():
    img = Image.new("RGB", (40, 30), (200, 10, 10))
    assert ResizeCenterCrop(32)(img).size == (32, 32)
    same = Image.new("RGB", (32, 32))
    assert ResizeCenterCrop(32)(same) is same
    crop = PaddedRandomCrop(32, 4)(Image.new("RGB", (32, 32), (255, 255, 255)), random.Random(1))
    a = np.asarray(crop)
    assert crop.size == (32, 32) and (a == 0).any() and (a == 255).any()  # some padding shows


# --- the cache loader ----------------------------------------------------------------------------
def test_cached_loader_shards_shuffles_and_repeats_with_the_seed():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 4, 4).clone()
    labels = torch.arange(20)
    ok = torch.ones(20, dtype=torch.bool)

    def epoch_indices(rank: int, epoch: int) -> list[int]:
        sampler = torch.utils.data.DistributedSampler(range(20), 2, rank, shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        loader = fastdata.CachedLoader(images, labels, ok, sampler, 4, train=True, pad=1)
        out = []
        for x, y, idx, k in loader:
            assert x.shape == (4, 3, 4, 4) and torch.equal(y, idx) and k.all()
            out += idx.tolist()
        assert len(loader) == 2 and len(out) == 8  # 10 per rank, the last 2 dropped
        return out

    r0, r1 = epoch_indices(0, 1), epoch_indices(1, 1)
    assert not set(r0) & set(r1)
    assert epoch_indices(0, 1) == r0 and epoch_indices(0, 2) != r0


def test_cached_val_loader_keeps_every_image_in_order():
    images = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    sampler = torch.utils.data.DistributedSampler(range(10), 1, 0, shuffle=False)
    loader = fastdata.CachedLoader(images, torch.arange(10), torch.ones(10, dtype=torch.bool),
                                   sampler, 4, train=False)  # fmt: skip
    assert len(loader) == 3
    assert torch.cat([b[2] for b in loader]).tolist() == list(range(10))


def test_build_loaders_memory_and_files_give_the_same_validation_batches(photos):
    index = fastdata.discover_any(photos, 0.34)
    args = _args()
    cached = fastdata.build_loaders(index, args, world=1, rank=0, batch=4, pin_memory=False)
    assert cached.plan.loader == "memory-cache"
    files = fastdata.build_loaders(index, _args(cache="none"), world=1, rank=0, batch=4,
                                   pin_memory=False)  # fmt: skip
    assert files.plan.loader == "jpeg"
    a = torch.cat([b[0] for b in cached.val])
    b = torch.cat([b[0] for b in files.val])
    assert torch.equal(a, b) and a.shape == (len(index.val), 3, 32, 32)
    x, _, _, ok = next(iter(cached.train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8 and ok.all()
    x2, *_ = next(iter(files.train))
    assert x2.shape == x.shape and x2.dtype == x.dtype


def test_small_recipe_evaluates_the_whole_small_image():
    pre = fastdata.eval_preprocess(_args())
    assert (pre.image_size, pre.resize_size) == (32, 32)
    big = fastdata.eval_preprocess(_args(image_size=224))
    assert (big.image_size, big.resize_size) == (224, 256)


# --- the prepared store ------------------------------------------------------------------------
def test_store_round_trip_keeps_labels_paths_and_pixels(photos, tmp_path):
    out = tmp_path / "store"
    meta = write_store(photos, out, max_side=32, val_fraction=0.34, workers=1)
    assert is_store(out) and meta["count"] == 18 and not meta["skipped"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["images.bin", "offsets.npy", "labels.npy", "paths.txt", "store.json"]
    )
    store = Store(out)
    index = store.index()
    folders = fastdata.discover_any(photos, 0.34)
    assert (index.train, index.val, index.classes) == (folders.train, folders.val, folders.classes)
    assert index.root == folders.root  # the run's paths stay those of the source
    # a 32 x 32 JPEG is stored byte for byte; the 40 x 30 one is shrunk to fit 32
    rel = index.train[1][0]
    assert store.read(1) == (photos / rel).read_bytes()
    with Image.open(__import__("io").BytesIO(store.read(0))) as im:
        assert max(im.size) == 32
    args = _args()
    a = fastdata.build_loaders(fastdata.discover_any(out, 0.34), _args(cache="none"), world=1,
                               rank=0, batch=4, pin_memory=False)  # fmt: skip
    assert a.plan.loader == "prepared"
    b = fastdata.build_loaders(folders, _args(cache="none"), world=1, rank=0, batch=4,
                               pin_memory=False)  # fmt: skip
    va, vb = (torch.cat([x[0] for x in loader]) for loader in (a.val, b.val))
    assert torch.equal(va, vb)
    assert args.augment == "pad-crop"


def test_store_is_written_atomically_and_not_over_an_existing_one(photos, tmp_path):
    out = tmp_path / "s"
    write_store(photos, out, max_side=32, val_fraction=0.34, workers=1)
    with pytest.raises(DataError, match="already exists; pass --force"):
        write_store(photos, out, max_side=32, val_fraction=0.34, workers=1)
    write_store(photos, out, max_side=16, val_fraction=0.34, workers=2, force=True)
    assert json.loads((out / "store.json").read_text())["max_side"] == 16
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporaries left behind
    with pytest.raises(DataError, match="inside the source folder"):
        write_store(photos, photos / "store", max_side=32)


def test_unreadable_images_are_skipped_and_named(photos, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(photos, src)
    (src / "cat" / "3.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    meta = write_store(src, tmp_path / "out", max_side=32, val_fraction=0.34, workers=1)
    assert meta["skipped"] == ["cat/3.jpg"] and meta["count"] == 17


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "images.bin").write_bytes(b"short"), "images.bin has the wrong size"),
    (lambda d: np.save(d / "offsets.npy", np.zeros(3, np.int64)), "does not match"),
    (lambda d: (d / "paths.txt").write_text("a\n"), "labels or paths miss images"),
    (lambda d: (d / "labels.npy").write_bytes(b"junk"), "damaged"),
])  # fmt: skip
def test_a_damaged_store_is_a_clear_error(photos, tmp_path, damage, message):
    out = tmp_path / "store"
    write_store(photos, out, max_side=32, val_fraction=0.34, workers=1)
    damage(out)
    with pytest.raises(DataError, match=message):
        Store(out)


def test_prepare_data_cli(photos, tmp_path):
    from tests.conftest import run_cli

    help_text = run_cli("trainer", "prepare-data", "--help").stdout
    assert "--max-side" in help_text and "images.bin" in help_text
    out = run_cli("trainer", "prepare-data", str(photos), str(tmp_path / "st"), "--max-side",
                  "24", "--val-fraction", "0.34", "--quiet").stdout  # fmt: skip
    assert "18 images" in out and "<= 24 px" in out
    again = run_cli("trainer", "prepare-data", str(photos), str(tmp_path / "st"), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
