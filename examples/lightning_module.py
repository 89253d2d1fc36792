"""A PyTorch Lightning module logged with epochscope's callback. Any ImageFolder layout of
small photos (train/<class>/, val/<class>/), e.g. ../shared/data/real-photos-10 or demo data:

    python examples/lightning_module.py --data ../shared/data/real-photos-10 --runs-dir runs
"""

import argparse
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from epochscope.integrations.lightning import EpochscopeCallback

SIZE, MEAN, STD = 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def load(folder: Path, classes: list[str]) -> tuple[list[tuple[str, int]], TensorDataset]:
    samples = [(str(p), i) for i, c in enumerate(classes) for p in sorted((folder / c).iterdir())]
    rgb = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE))) for p, _ in samples]
    x = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return samples, TensorDataset(x, torch.tensor([y for _, y in samples]))


class SmallCNN(pl.LightningModule):
    def __init__(self, num_classes: int, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        logits = self(batch[0])
        self.log("val_loss", nn.functional.cross_entropy(logits, batch[1]))
        return logits  # the callback logs these as the epoch's predictions

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default="lightning")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    pl.seed_everything(0)
    classes = sorted(d.name for d in (args.data / "train").iterdir() if d.is_dir())
    _, train = load(args.data / "train", classes)
    val_samples, val = load(args.data / "val", classes)
    callback = EpochscopeCallback(
        args.name, args.runs_dir, classes=classes, val_images=val_samples,
        image_size=SIZE, resize_size=SIZE, mean=MEAN, std=STD,
    )  # fmt: skip
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="auto", devices=1, logger=False,
                         callbacks=[callback], enable_checkpointing=False)  # fmt: skip
    trainer.fit(SmallCNN(len(classes)), DataLoader(train, batch_size=64, shuffle=True),
                DataLoader(val, batch_size=256))  # fmt: skip


if __name__ == "__main__":
    main()
