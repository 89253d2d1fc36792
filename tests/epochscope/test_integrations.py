"""The framework integrations, for real on CPU on tiny data: a Lightning Trainer and a Hugging
Face Trainer each write a run the readers (and the dashboard's classifier) accept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader

CLASSES = ["red", "green", "blue"]


def _data(n: int, seed: int):
    """Images whose class is their brightest channel: learnable in a few steps."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 3, 8, 8, generator=g) * 0.5
    x[torch.arange(n), y] += 0.5
    return x, y


def _hf_images():
    """A Hugging Face style dataset of :func:`_data`: dicts of pixel_values and labels."""
    import torch

    class Images(torch.utils.data.Dataset):
        def __init__(self, n: int, seed: int) -> None:
            self.x, self.y = _data(n, seed)

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict:
            return {"pixel_values": self.x[i], "labels": self.y[i]}

    return Images


def _hf_model():
    """A Hugging Face style model: pixel_values in, a dict with logits (and loss) out."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                           torch.nn.Linear(3, 3))  # fmt: skip

        def forward(self, pixel_values, labels=None):
            logits = self.net(pixel_values)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
            return out

    return Tiny


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_lightning_callback_logs_a_whole_run(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from epochscope.integrations.lightning import EpochscopeCallback

    class Tiny(pl.LightningModule):
        def __init__(self, lr: float = 0.5) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                           torch.nn.Linear(3, 3))  # fmt: skip

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            logits = self(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())
            return logits

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    train = DataLoader(TensorDataset(*_data(96, 0)), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(*_data(30, 1)), batch_size=8)
    callback = EpochscopeCallback("light", str(tmp_path), classes=CLASSES, image_size=8,
                                  resize_size=8, mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=2)  # fmt: skip
    trainer.fit(Tiny(), train, val)

    run_dir = tmp_path / "light"
    info = reader.read_run_info(run_dir)
    assert info.engine == "epochscope-api" and info.epochs == 3 and info.arch == "Tiny"
    assert info.hparams == {"lr": 0.5}
    table = reader.epoch_table(_events(run_dir))
    assert list(table) == [1, 2, 3]
    last = table[3]
    # the epoch's own numbers from callback_metrics, the accuracies from the predictions
    assert last["val_acc"] == pytest.approx(last["val_top1"], abs=1e-6)
    assert {"train_loss", "val_loss", "lr"} <= set(last)
    labels, _ = reader.read_val_index(run_dir)
    assert labels.tolist() == (np.arange(30) % 3).tolist()
    assert reader.prediction_epochs(run_dir) == reader.model_epochs(run_dir) == [1, 2, 3]
    steps = [e for e in _events(run_dir) if e["kind"] == "step"]
    assert steps and all(e["steps_per_epoch"] == 6 for e in steps)
    assert reader.last_status(_events(run_dir))["state"] == "finished"
    from dashboard.inference import Classifier

    x, _ = _data(4, 2)
    top = Classifier.for_run(run_dir, 3).predict(x.numpy())
    assert [t[0]["name"] for t in top] == [CLASSES[i] for i in trainer.model(x).argmax(1)]
    # the head's input (the pooled image) of every validation image, as the epoch's embeddings
    _check_embeddings(run_dir, _data(30, 1)[0].mean(dim=(2, 3)).numpy())


@pytest.mark.slow
def test_hf_trainer_callback_logs_a_whole_run(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch
    from transformers import Trainer, TrainingArguments

    from epochscope.integrations.transformers import EpochscopeTrainerCallback

    Images = _hf_images()
    Tiny = _hf_model()
    callback = EpochscopeTrainerCallback("hf", str(tmp_path), classes=CLASSES, image_size=8,
                                         resize_size=8, mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf-out"), num_train_epochs=3, per_device_train_batch_size=16,
        per_device_eval_batch_size=8, eval_strategy="epoch", save_strategy="no",
        logging_steps=2, learning_rate=0.5, report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=Tiny(), args=args, train_dataset=Images(96, 0), eval_dataset=Images(30, 1),
        callbacks=[callback], compute_metrics=callback.compute_metrics,
    )  # fmt: skip
    trainer.train()

    run_dir = tmp_path / "hf"
    info = reader.read_run_info(run_dir)
    assert info.engine == "epochscope-api" and info.epochs == 3
    assert info.hparams["learning_rate"] == 0.5
    table = reader.epoch_table(_events(run_dir))
    assert list(table) == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_top1", "val_top5"} <= set(table[3])
    labels, _ = reader.read_val_index(run_dir)
    assert labels.tolist() == (np.arange(30) % 3).tolist()
    assert reader.prediction_epochs(run_dir) == reader.model_epochs(run_dir) == [1, 2, 3]
    steps = [e for e in _events(run_dir) if e["kind"] == "step"]
    assert steps and all("loss" in e for e in steps)
    assert all(reader.load_label_stats(run_dir, e, 30) is not None for e in (1, 2, 3))
    assert reader.last_status(_events(run_dir))["state"] == "finished"
    from dashboard.inference import Classifier

    x, _ = _data(4, 2)
    top = Classifier.for_run(run_dir, 3).predict(x.numpy())
    with torch.no_grad():
        want = trainer.model(x.to(trainer.model.net[2].weight.device))["logits"].argmax(1)
    assert [t[0]["name"] for t in top] == [CLASSES[i] for i in want.cpu()]
    _check_embeddings(run_dir, _data(30, 1)[0].mean(dim=(2, 3)).numpy())


def _check_embeddings(run_dir: Path, features: np.ndarray) -> None:
    """Every epoch stored embeddings that are the projection of ``features`` [N, F] (rows in
    validation order), and its model gives the same features as its ``embedding`` output."""
    import onnxruntime as ort

    from epochscope.embeddings import unit_rows

    assert reader.embedding_epochs(run_dir) == [1, 2, 3]
    for epoch in (1, 2, 3):
        stored = reader.load_embeddings(run_dir, epoch, len(features))
        want = stored.projection(features)
        assert np.allclose(stored.vectors.astype(np.float32), want, atol=2e-3)
        data = reader.model_path(run_dir, epoch).read_bytes()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    # neighbours by the stored vectors are those by the features themselves
    unit = unit_rows(stored.vectors)
    assert np.allclose(unit @ unit[0], unit_rows(want) @ unit_rows(want)[0], atol=1e-2)


LIGHTNING_DDP = """
import sys
import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from epochscope.integrations.lightning import EpochscopeCallback

g = torch.Generator().manual_seed(1)
n = 29  # odd over 2 ranks: the sampler pads one repeat
y = torch.arange(n) % 3
x = torch.rand(n, 3, 8, 8, generator=g) * 0.5
x[torch.arange(n), y] += 0.5

class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(3, 3))
    def forward(self, x):
        return self.net(x)
    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
    def validation_step(self, batch, _):
        return self(batch[0])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # frozen: logits checkable after

torch.manual_seed(0)
model = Tiny()
cb = EpochscopeCallback("ddp", sys.argv[1], classes=["r", "g", "b"], image_size=8)
trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp",
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[cb])
trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8),
            DataLoader(TensorDataset(x, y), batch_size=4))
if trainer.global_rank == 0:
    torch.save({"logits": model(x).detach(), "labels": y}, sys.argv[1] + "/expected.pt")
"""


@pytest.mark.slow
def test_lightning_callback_under_ddp_gathers_in_order(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    import os
    import subprocess
    import sys

    import torch

    from epochscope.predictions import LABEL_ARRAYS, label_stats, top5_from_logits

    script = tmp_path / "ddp.py"
    script.write_text(LIGHTNING_DDP)
    runs = tmp_path / "runs"
    runs.mkdir()
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(script), str(runs)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = torch.load(runs / "expected.pt")
    top5, _ = reader.load_predictions(runs / "ddp", 1, num_rows=29, num_classes=3)
    assert np.array_equal(top5, top5_from_logits(expected["logits"].numpy())[0])
    labels, _ = reader.read_val_index(runs / "ddp")
    assert labels.tolist() == expected["labels"].tolist()
    assert reader.read_run_info(runs / "ddp").world_size == 2
    # label scores and temperature: those of the gathered logits, in the same order
    stored = reader.load_label_stats(runs / "ddp", 1, num_rows=29)
    want = label_stats(expected["logits"].numpy(), labels)
    for name in LABEL_ARRAYS:
        assert np.allclose(stored[name], want[name], atol=1e-6, equal_nan=True), name
    assert float(stored["temperature"]) == pytest.approx(float(want["temperature"]), rel=1e-5)
    # embeddings gathered in the same order: the pooled images of rows 0..28
    g = torch.Generator().manual_seed(1)
    x = torch.rand(29, 3, 8, 8, generator=g) * 0.5
    x[torch.arange(29), expected["labels"]] += 0.5
    embedded = reader.load_embeddings(runs / "ddp", 1, 29)
    want_vectors = embedded.projection(x.mean(dim=(2, 3)).numpy())
    assert np.allclose(embedded.vectors.astype(np.float32), want_vectors, atol=2e-3)


# --- numbers that are what they say; problems that warn instead of ending training -------------
def _lightning_module(losses: list[tuple[int, float]] | None = None):
    """A LightningModule as Lightning's docs write one: per-step self.log in training_step."""
    import lightning.pytorch as pl
    import torch

    class Docs(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                           torch.nn.Linear(3, 3))  # fmt: skip

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            logits = self(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            self.log("train_loss", loss)  # on_step=True, on_epoch=False: Lightning's default
            self.log("train_acc", (logits.argmax(1) == y).float().mean())
            if losses is not None:
                losses.append((self.current_epoch + 1, float(loss) * len(y), len(y)))
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            logits = self(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
            return logits

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.4)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    return Docs()


def _fit(tmp_path: Path, name: str, module, val_shuffle: bool) -> list[str]:
    import warnings

    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from epochscope.api import EpochscopeWarning
    from epochscope.integrations.lightning import EpochscopeCallback

    # 100 training images in batches of 16: the last batch holds 4
    train = DataLoader(TensorDataset(*_data(100, 0)), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(*_data(30, 1)), batch_size=8, shuffle=val_shuffle)
    callback = EpochscopeCallback(name, str(tmp_path), classes=CLASSES, image_size=8,
                                  resize_size=8, mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=2)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train, val)
    return [str(w.message) for w in caught if issubclass(w.category, EpochscopeWarning)]


@pytest.mark.slow
def test_lightning_shuffled_validation_loader_warns_and_training_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    warned = _fit(tmp_path, "shuffled", _lightning_module(), val_shuffle=True)
    shuffled = [w for w in warned if "shuffled" in w]
    assert len(shuffled) == 1 and "shuffle=False" in shuffled[0]
    run_dir = tmp_path / "shuffled"
    assert list(reader.epoch_table(_events(run_dir))) == [1, 2, 3]  # training went on
    assert reader.prediction_epochs(run_dir) == []  # no predictions matched to wrong images
    assert reader.last_status(_events(run_dir))["state"] == "finished"
    assert any("shuffle=False" in e.get("message", "") for e in _events(run_dir))


@pytest.mark.slow
def test_lightning_epoch_numbers_are_epoch_means_and_the_epochs_own_lr(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    losses: list[tuple[int, float, int]] = []
    warned = _fit(tmp_path, "means", _lightning_module(losses), val_shuffle=False)
    table = reader.epoch_table(_events(tmp_path / "means"))
    for epoch in (1, 2, 3):
        mine = [(total, n) for e, total, n in losses if e == epoch]
        mean = sum(t for t, _ in mine) / sum(n for _, n in mine)
        assert table[epoch]["train_loss"] == pytest.approx(mean, rel=1e-5)
    # StepLR halves the lr after each epoch: epoch k trained with 0.4 / 2**(k-1)
    assert [table[e]["lr"] for e in (1, 2, 3)] == pytest.approx([0.4, 0.2, 0.1])
    # train_acc was logged per step only: its last-batch value is not passed off as the epoch's
    assert all("train_acc" not in row for row in table.values())
    assert any("train_acc logged per step only" in w and "on_epoch=True" in w for w in warned)
    assert reader.prediction_epochs(tmp_path / "means") == [1, 2, 3]
    # no training set, no logits, no indices: said once, all three named, training went on
    stats = [w for w in warned if "no per-image training statistics" in w]
    assert len(stats) == 1
    assert all(k in stats[0] for k in ("train_labels=", '"logits": logits', "dataset_indices"))
    assert not (tmp_path / "means" / "train_stats").exists()


@pytest.mark.slow
def test_lightning_callback_records_training_statistics_from_the_step(tmp_path: Path) -> None:
    """A step returning its logits, batches carrying their indices, the training labels given:
    each epoch's file holds every image's probability of its label and margin as the model's
    logits give them (the model is frozen, lr 0, so they can be recomputed after)."""
    pytest.importorskip("lightning")
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from epochscope.integrations.lightning import EpochscopeCallback

    class Stepping(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                           torch.nn.Linear(3, 3))  # fmt: skip

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y, _index = batch
            logits = self(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, y), "logits": logits}

        def validation_step(self, batch, _):
            return self(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    torch.manual_seed(0)
    x, y = _data(96, 0)
    y[::7] = (y[::7] + 1) % 3  # some labels moved: their probabilities stay low
    train = DataLoader(TensorDataset(x, y, torch.arange(96)), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(*_data(30, 1)), batch_size=8)
    callback = EpochscopeCallback("stats", str(tmp_path), classes=CLASSES, image_size=8,
                                  train_labels=y.tolist(), log_model=False)  # fmt: skip
    model = Stepping()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, train, val)
    run_dir = tmp_path / "stats"
    with torch.no_grad():
        logits = model(x)
    p = torch.softmax(logits, 1)[torch.arange(96), y].numpy()
    for epoch in (1, 2):
        stored = reader.load_train_stats(run_dir, epoch, 96, 3)
        assert np.allclose(stored["p_label"], p, atol=2e-3)  # float16 on disk
        assert (stored["other"] != y.numpy()).all()
    issues = epochscope.open_run(run_dir).training_label_issues()
    assert len(issues) == 96 and issues["confidence"].is_monotonic_increasing


@pytest.mark.slow
def test_hf_trainer_without_compute_metrics_warns_and_logs_eval_loss(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import warnings

    from transformers import Trainer, TrainingArguments

    from epochscope.api import EpochscopeWarning
    from epochscope.integrations.transformers import EpochscopeTrainerCallback

    Images = _hf_images()
    Tiny = _hf_model()
    callback = EpochscopeTrainerCallback("hf-bare", str(tmp_path), classes=CLASSES, image_size=8)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf-out"), num_train_epochs=2, per_device_train_batch_size=16,
        per_device_eval_batch_size=8, eval_strategy="epoch", save_strategy="no",
        logging_steps=2, learning_rate=0.5, report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=Tiny(), args=args, train_dataset=Images(96, 0),
                      eval_dataset=Images(30, 1), callbacks=[callback])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    warned = [str(w.message) for w in caught if issubclass(w.category, EpochscopeWarning)]
    assert len(warned) == 1 and "compute_metrics=cb.compute_metrics" in warned[0]
    events = _events(tmp_path / "hf-bare")
    table = reader.epoch_table(events)
    assert list(table) == [1, 2] and all("val_loss" in table[e] for e in (1, 2))
    assert reader.prediction_epochs(tmp_path / "hf-bare") == []
    # the epoch's train loss is the mean of its logged losses (6 steps, logged every 2)
    logged = [h for h in trainer.state.log_history if "loss" in h and "eval_loss" not in h]
    first = [h["loss"] for h in logged if h["step"] <= 6]
    assert len(first) == 3 and table[1]["train_loss"] == pytest.approx(np.mean(first), rel=1e-5)


@pytest.mark.slow
def test_hf_trainer_records_training_statistics_as_its_docstring_says(tmp_path: Path) -> None:
    """The recipe of epochscope/integrations/transformers.py: a Trainer whose compute_loss
    passes the step's logits and the batch's indices to the callback's run (frozen model, lr 0,
    so the stored probabilities can be recomputed after)."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch
    from transformers import Trainer, TrainingArguments

    from epochscope.integrations.transformers import EpochscopeTrainerCallback

    x, y = _data(96, 0)

    class Indexed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int) -> dict:
            return {"pixel_values": x[i], "labels": y[i], "index": i}

    Tiny = _hf_model()
    cb = EpochscopeTrainerCallback("hfstats", str(tmp_path), classes=CLASSES, image_size=8,
                                   train_labels=y.tolist(), log_model=False)  # fmt: skip

    class RecordingTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kw):
            index = inputs.pop("index")
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kw)
            if model.training:
                cb.run.log_train_batch(index, outputs["logits"].detach(), inputs["labels"])
            return (loss, outputs) if return_outputs else loss

    args = TrainingArguments(
        output_dir=str(tmp_path / "hf-out"), num_train_epochs=2, per_device_train_batch_size=16,
        per_device_eval_batch_size=8, eval_strategy="epoch", save_strategy="no",
        learning_rate=0.0, report_to=[], use_cpu=True, disable_tqdm=True,
        remove_unused_columns=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Tiny()
    trainer = RecordingTrainer(model=model, args=args, train_dataset=Indexed(),
                               eval_dataset=Indexed(), callbacks=[cb],
                               compute_metrics=cb.compute_metrics)  # fmt: skip
    trainer.train()
    with torch.no_grad():
        p = torch.softmax(model.net(x), 1)[torch.arange(96), y].numpy()
    for epoch in (1, 2):
        stored = reader.load_train_stats(tmp_path / "hfstats", epoch, 96, 3)
        assert np.allclose(stored["p_label"], p, atol=2e-3)
