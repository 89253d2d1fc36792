"""A plain PyTorch training loop logged with epochscope: curves, confusion matrix, drill-down
and the classifier page for your own code. Any ImageFolder layout (train/<class>/*.jpg and
val/<class>/*.jpg) of small photos, for example ../shared/data/real-photos-10 or the demo data:

    python examples/plain_pytorch.py --data ../shared/data/real-photos-10 --runs-dir runs
    python -m dashboard --runs-dir runs
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import epochscope

SIZE, MEAN, STD = 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def load(folder: Path, classes: list[str]) -> tuple[list[tuple[str, int]], torch.Tensor]:
    samples = [(str(p), i) for i, c in enumerate(classes) for p in sorted((folder / c).iterdir())]
    rgb = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE))) for p, _ in samples]
    x = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255
    return samples, (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default="plain-pytorch")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.05)
    args = p.parse_args()
    torch.manual_seed(0)
    classes = sorted(d.name for d in (args.data / "train").iterdir() if d.is_dir())
    train, x_train = load(args.data / "train", classes)
    val, x_val = load(args.data / "val", classes)
    y_train = torch.tensor([y for _, y in train])
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(classes)),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    steps = (len(train) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps)
    hparams = {**vars(args), "data": str(args.data)}
    with epochscope.init(
        args.name, args.runs_dir, classes=classes, val_images=val, hparams=hparams,
        image_size=SIZE, resize_size=SIZE, mean=MEAN, std=STD,  # what the classifier page does
        epochs=args.epochs, arch="small-cnn", batch_size=64, num_train=len(train),
    ) as run:  # fmt: skip
        for epoch in range(1, args.epochs + 1):
            model.train()
            total = 0.0
            for i, batch in enumerate(torch.randperm(len(train)).split(64)):
                flip = torch.rand(len(batch)) < 0.5  # horizontal flips, the only augmentation
                xb = torch.where(flip[:, None, None, None], x_train[batch].flip(3), x_train[batch])
                loss = nn.functional.cross_entropy(model(xb), y_train[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
                lr = sched.get_last_lr()[0]
                run.log_step((epoch - 1) * steps + i + 1, loss=loss.item(), lr=lr)
            model.eval()
            with torch.no_grad():
                logits = torch.cat([model(xb) for xb in x_val.split(256)])
            run.log_predictions(epoch, logits)  # val top-1/top-5 and loss come from these
            run.log_model(epoch, model)  # ONNX for the classifier page
            event = run.log_epoch(epoch, train_loss=total / steps, lr=lr)
            top1, top5 = event["val_top1"], event["val_top5"]
            print(
                f"epoch {epoch}: loss {total / steps:.3f}, val top-1 {top1:.1%}, top-5 {top5:.1%}"
            )


if __name__ == "__main__":
    main()
