"""A plain, well-tuned PyTorch training loop: the reference the trainer's recipe is measured
against (bench/recipe_bench.py).

What a careful person writes for small photos by hand: every image decoded once into a uint8
tensor, a shuffled permutation per epoch, zero-padded random crop + horizontal flip per image,
SGD with Nesterov momentum and weight decay, OneCycleLR, label smoothing 0.1, channels_last.
It shares nothing with the trainer but the model factory, so both train the same network.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from trainer.models import create_model

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def load_folder(split: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``split/<class>/*`` as uint8 [N, 3, size, size] and labels (classes in name order)."""
    classes = sorted(p.name for p in split.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((split / name).iterdir()):
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(img))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels)


def augment(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding=pad) + RandomHorizontalFlip, image by image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=g).tolist()
    flips = (torch.rand(n, generator=g) < 0.5).tolist()
    out = torch.empty_like(x)
    for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = crop.flip(2) if flip else crop
    return out


def normalize(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() - MEAN) / STD).contiguous(memory_format=torch.channels_last)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    hits = 0
    with torch.no_grad():
        for s in range(0, len(x), 256):
            hits += int((model(normalize(x[s : s + 256])).argmax(1) == y[s : s + 256]).sum())
    return hits / len(x)


def train_reference(
    root: Path,
    *,
    stem: str,
    width: float,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.2,
    weight_decay: float = 5e-4,
    image_size: int = 32,
    seed: int = 0,
) -> dict:
    """Train ``resnet18_v2`` on ``root/train``; top-1 on ``root/val`` after every epoch."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    train_x, train_y = load_folder(root / "train", image_size)
    val_x, val_y = load_folder(root / "val", image_size)
    load_seconds = time.perf_counter() - t0
    classes = int(train_y.max()) + 1
    model = create_model("resnet18_v2", num_classes=classes, width=width, stem=stem)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=weight_decay)  # fmt: skip
    steps = len(train_x) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    pad = image_size // 8
    epoch_img_per_s, val_top1 = [], []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=g)
        start = time.perf_counter()
        for s in range(steps):
            idx = order[s * batch_size : (s + 1) * batch_size]
            x = normalize(augment(train_x[idx], pad, g))
            loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        epoch_img_per_s.append(steps * batch_size / (time.perf_counter() - start))
        val_top1.append(evaluate(model, val_x, val_y))
    return {
        "val_top1": val_top1[-1],
        "val_top1_per_epoch": val_top1,
        "epoch_img_per_s": epoch_img_per_s,
        "img_per_s": len(epoch_img_per_s) / sum(1 / r for r in epoch_img_per_s),
        "load_seconds": load_seconds,
        "wall_seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bench.recipe_reference", description=__doc__)
    p.add_argument("data", type=Path, help="folder with train/<class>/ and val/<class>/")
    p.add_argument("--stem", choices=("small", "imagenet"), default="small")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the result as JSON here (else stdout)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    r = train_reference(a.data, stem=a.stem, width=a.width, epochs=a.epochs,
                        batch_size=a.batch_size, lr=a.lr, seed=a.seed)  # fmt: skip
    text = json.dumps({"stem": a.stem, "width": a.width, "lr": a.lr, **r})
    if a.out:
        a.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
