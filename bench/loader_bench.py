"""Data loading against training: can the loader keep the demo model fed?

``loader_vs_train``: img/s of the trainer's training loader alone (JPEG decode, random resized
crop, flip, collate: ``trainer.data``'s pipeline in a DataLoader built by ``build_loader`` with
the demo's one worker) over the demo model's training img/s on in-memory batches, timed
interleaved. Measured on the demo's 32 px JPEGs and on 224 px JPEGs (the model then trains at
224 px). ``draft_speedup_*``: the pipeline with JPEG draft decoding over the same without it,
on 500 px sources cropped to 224 and to 64 px.
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
    return out
