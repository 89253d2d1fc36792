"""Data loading against training: can the loader keep the demo model fed?

``loader_vs_train``: img/s of the trainer's training loader alone (JPEG decode, random resized
crop, flip, collate: ``trainer.data``'s pipeline in a DataLoader built by ``build_loader`` with
the demo's one worker) over the demo model's training img/s on in-memory batches, timed
interleaved. Measured on the demo's 32 px JPEGs and on 224 px JPEGs (the model then trains at
224 px). ``draft_speedup_*``: the pipeline with JPEG draft decoding over the same without it,
on 500 px sources cropped to 224 and to 64 px.

``cached_vs_tensors``: the trainer's own input path on real 32 x 32 JPEGs (real-photos-10,
``trainer.fastdata.build_loaders`` as ``train`` builds it: decoded once into memory, then
crop + flip per batch) against batches gathered from tensors with the plain reference's
augmentation, each feeding the same training step, interleaved. ``prepared_vs_jpeg``: the
128 px training pipeline (resized crop + flip) reading a ``prepare-data --max-side 160`` store
against reading the original 500 x 375 and larger JPEGs, in-process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from bench import fixtures
from bench.harness import interleaved, rate, ratio
from bench.trainer_bench import InMemoryLoader
from trainer.data import (
    ImageDataset,
    Normalize,
    build_loader,
    cpu_threads,
    discover,
    train_pipeline,
)
from trainer.models import create_model
from trainer.presets import DEMO_PRESET


def _loader(root: Path, images: int, image_size: int, batch: int, workers: int):
    index = discover(root)
    samples = (index.train * (images // len(index.train) + 1))[:images]
    dataset = ImageDataset(index.root, samples, train_pipeline(image_size, 0.35))
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True)
    return build_loader(dataset, batch, sampler, workers, train=True, pin_memory=False)


def _bare_train(image_size: int, batch: int, batches: int, classes: int):
    """One pass of the demo model over ``batches`` in-memory batches (the trainer's CPU setup:
    no channels_last, no autocast)."""
    model = create_model("resnet18_v2", num_classes=classes, width=DEMO_PRESET["width"])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = InMemoryLoader(batches, batch, image_size, classes)
    normalize = Normalize(torch.device("cpu"))

    def step() -> None:
        model.train()
        for x, y, _, _ in data:
            loss = F.cross_entropy(model(normalize(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def loader_vs_train(root: Path, image_size: int, batch: int, batches: int, repeats: int) -> dict:
    images = batch * batches
    loader = _loader(root, images, image_size, batch, DEMO_PRESET["workers"])

    def load() -> None:
        for _ in loader:
            pass

    train = _bare_train(image_size, batch, batches, classes=100)
    t_load, t_train = interleaved(load, train, repeats)
    return {
        "config": dict(image_size=image_size, batch_size=batch, images=images,
                       workers=DEMO_PRESET["workers"], threads=torch.get_num_threads()),
        "loader_img_per_s": rate(images, t_load).as_dict(),
        "train_img_per_s": rate(images, t_train).as_dict(),
        "loader_vs_train": ratio(t_load, t_train).as_dict(),
    }  # fmt: skip


def _photo_sources(folder: Path, count: int, side: int = 500) -> list[Path]:
    """``count`` 500 px JPEGs (a real photo, shifted) for the draft decode comparison."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(data.chelsea()).resize((side * 4 // 3, side))
    paths = []
    for i in range(count):
        path = folder / f"photo-{side}-{i}.jpg"
        if not path.exists():
            base.rotate(i * 7, expand=False).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def draft_speedup(paths: list[Path], image_size: int, repeats: int) -> dict:
    on = train_pipeline(image_size, 0.35)
    off = dataclasses.replace(on, draft_size=0)  # 0: open_image decodes at full scale

    def run(pipeline):
        return lambda: [pipeline(p) for p in paths]

    t_on, t_off = interleaved(run(on), run(off), repeats)
    return {
        "draft_img_per_s": rate(len(paths), t_on).as_dict(),
        "full_decode_img_per_s": rate(len(paths), t_off).as_dict(),
        "draft_speedup": ratio(t_on, t_off).as_dict(),
    }


def _small_step(classes: int):
    """One training step of the demo-width model with the ImageNet stem (cheap, so the loader's
    share of the time is as large as it gets)."""
    model = create_model("resnet18_v2", num_classes=classes, width=DEMO_PRESET["width"])
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    normalize = Normalize(torch.device("cpu"), channels_last=True)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(normalize(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def cached_vs_tensors(root: Path, batch: int, batches: int, repeats: int) -> dict:
    import argparse
    import time

    from bench.recipe_reference import augment, load_folder
    from trainer import fastdata, recipe

    args = argparse.Namespace(recipe="auto", image_size=32, epochs=6, batch_size=batch,
                              stem="auto", augment="auto", nesterov=None, norm_decay=None,
                              lr=None, weight_decay=None, label_smoothing=None,
                              lr_schedule=None, warmup_epochs=None, min_crop_scale=None,
                              seed=0, workers=0, cache="auto")  # fmt: skip
    recipe.apply(args, set())
    index = fastdata.discover_any(root, 0.1)
    t0 = time.perf_counter()
    loaders = fastdata.build_loaders(index, args, world=1, rank=0, batch=batch, pin_memory=False)
    build_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tx, ty = load_folder(root / "train", 32)
    tensor_load_seconds = time.perf_counter() - t0
    step = _small_step(len(index.classes))
    g = torch.Generator().manual_seed(0)

    def ours() -> None:
        for i, (x, y, _, _) in enumerate(loaders.train):
            if i == batches:
                break
            step(x, y)

    def tensors() -> None:
        order = torch.randperm(len(tx), generator=g)
        for i in range(batches):
            idx = order[i * batch : (i + 1) * batch]
            step(augment(tx[idx], 4, g), ty[idx])

    t_ours, t_ref = interleaved(ours, tensors, repeats)
    images = batch * batches
    return {
        "config": dict(data=str(root), batch_size=batch, images=images,
                       loader=loaders.plan.loader, threads=torch.get_num_threads()),
        "decode_once_seconds": build_seconds,
        "reference_tensor_load_seconds": tensor_load_seconds,
        "cached_img_per_s": rate(images, t_ours).as_dict(),
        "tensors_img_per_s": rate(images, t_ref).as_dict(),
        "cached_vs_tensors": ratio(t_ours, t_ref).as_dict(),
    }  # fmt: skip


def _large_photo_folder(folder: Path, per_class: int) -> Path:
    """Two classes of real photos (scikit-image's) at 500 x 375 and larger, as JPEGs."""
    from skimage import data

    if (folder / ".done").exists():
        return folder
    photos = {"cat": [data.chelsea(), data.coffee()], "rocket": [data.rocket(), data.astronaut()]}
    for cls, arrays in photos.items():
        for split, n in (("train", per_class), ("val", max(1, per_class // 4))):
            (folder / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.fromarray(arrays[i % len(arrays)]).convert("RGB")
                w, h = img.size
                scale = max(500 / max(w, h), 375 / min(w, h)) * (1 + 0.1 * (i % 4))
                img = img.resize((round(w * scale), round(h * scale))).rotate(i * 3)
                img.save(folder / split / cls / f"{i:04d}.jpg", "JPEG", quality=90)
    (folder / ".done").touch()
    return folder


def prepared_vs_jpeg(cache: Path, per_class: int, repeats: int, size: int = 128) -> dict:
    from trainer import fastdata
    from trainer.store import write_store

    src = _large_photo_folder(cache / f"photos-large-{per_class}", per_class)
    store = cache / f"store-large-{per_class}-160"
    if not (store / "store.json").exists():
        write_store(src, store, max_side=160, workers=2, force=True)
    pipeline = train_pipeline(size, 0.25)
    files = fastdata.dataset_for(fastdata.discover_any(src, 0.1), "train", pipeline)
    prepared = fastdata.dataset_for(fastdata.discover_any(store, 0.1), "train", pipeline)
    n = len(files)

    def read(ds):
        return lambda: [ds[i] for i in range(n)]

    t_prep, t_jpeg = interleaved(read(prepared), read(files), repeats)
    sides = sorted({Image.open(src / p).size for p, _ in files.samples})
    return {
        "config": dict(images=n, image_size=size, max_side=160, source_sizes=sides[:6]),
        "prepared_img_per_s": rate(n, t_prep).as_dict(),
        "jpeg_img_per_s": rate(n, t_jpeg).as_dict(),
        "prepared_vs_jpeg": ratio(t_prep, t_jpeg).as_dict(),
    }


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    torch.set_num_threads(cpu_threads(DEMO_PRESET["workers"]))  # as the trainer trains
    batch = DEMO_PRESET["batch_size"]
    if quick:
        demo = fixtures.demo_data(4, train_per_class=8, val_per_class=2, cache=cache)
        big = fixtures.demo_data(4, 224, train_per_class=4, val_per_class=1, cache=cache)
        out = {
            "demo_32px": loader_vs_train(demo, 32, 16, 2, repeats=2),
            "jpeg_224px": loader_vs_train(big, 224, 4, 2, repeats=2),
        }
        photos = _photo_sources(cache / "photos", 4)
        repeats = 2
    else:
        demo = fixtures.demo_data(100, cache=cache)
        big = fixtures.demo_data(20, 224, train_per_class=12, val_per_class=2, cache=cache)
        out = {
            "demo_32px": loader_vs_train(demo, 32, batch, 6, repeats=5),
            "jpeg_224px": loader_vs_train(big, 224, 16, 2, repeats=3),
        }
        photos = _photo_sources(cache / "photos", 40)
        repeats = 5
    out["draft_500px_to_224"] = draft_speedup(photos, 224, repeats)
    out["draft_500px_to_64"] = draft_speedup(photos, 64, repeats)
    out["prepared_500px"] = prepared_vs_jpeg(cache, 8 if quick else 100, repeats)
    from bench.recipe_bench import REAL_PHOTOS

    if (REAL_PHOTOS / "train").is_dir():
        out["real_photos_32px"] = cached_vs_tensors(REAL_PHOTOS, batch, 2 if quick else 20,
                                                    repeats)  # fmt: skip
    else:
        out["real_photos_32px"] = {"skipped": f"no real photos at {REAL_PHOTOS}"}
    return out
