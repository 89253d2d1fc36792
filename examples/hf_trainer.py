"""A Hugging Face Trainer logged with epochscope's TrainerCallback (its compute_metrics hands
the callback the predictions). Any ImageFolder layout of small photos, e.g.
../shared/data/real-photos-10 or the demo data:

    python examples/hf_trainer.py --data ../shared/data/real-photos-10 --runs-dir runs
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import Trainer, TrainingArguments

from epochscope.integrations.transformers import EpochscopeTrainerCallback

SIZE, MEAN, STD = 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class Photos(torch.utils.data.Dataset):
    """An ImageFolder as Trainer wants it: {"pixel_values", "labels"} per item."""

    def __init__(self, folder: Path, classes: list[str]) -> None:
        self.samples = [(str(p), i) for i, c in enumerate(classes)
                        for p in sorted((folder / c).iterdir())]  # fmt: skip
        rgb = [
            np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE))) for p, _ in self.samples
        ]
        x = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255
        self.x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": self.samples[i][1]}


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
        )  # fmt: skip

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.net(pixel_values)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default="hf-trainer")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    classes = sorted(d.name for d in (args.data / "train").iterdir() if d.is_dir())
    train, val = Photos(args.data / "train", classes), Photos(args.data / "val", classes)
    callback = EpochscopeTrainerCallback(
        args.name, args.runs_dir, classes=classes, val_images=val.samples,
        image_size=SIZE, resize_size=SIZE, mean=MEAN, std=STD,
    )  # fmt: skip
    training = TrainingArguments(
        output_dir=str(Path(args.runs_dir) / f".{args.name}-hf"), num_train_epochs=args.epochs,
        per_device_train_batch_size=64, per_device_eval_batch_size=256, learning_rate=0.01,
        eval_strategy="epoch", save_strategy="no", logging_steps=10, report_to=[],
    )  # fmt: skip
    trainer = Trainer(
        model=SmallCNN(len(classes)), args=training, train_dataset=train, eval_dataset=val,
        callbacks=[callback], compute_metrics=callback.compute_metrics,
    )  # fmt: skip
    trainer.train()


if __name__ == "__main__":
    main()
