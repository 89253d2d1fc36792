"""PyTorch Lightning: ``Trainer(callbacks=[EpochscopeCallback("my-run", classes=names)])``.

The callback collects each validation epoch's logits (what ``validation_step`` returns: the
logits tensor, or a dict with ``"logits"``; else it runs the module on the batch's inputs), with
the batch's labels, gathers them across ranks in validation order, and logs the predictions, the
model as ONNX, and the epoch's numbers from ``trainer.callback_metrics``. Batches are
``(inputs, labels)`` or ``(inputs, labels, dataset_indices)``. Without indices the rows must
come in the same order every epoch (under DDP they are placed as Lightning's unshuffled
DistributedSampler deals them: rank r gets r, r + W, ...): a shuffled validation loader gets one
warning naming the fix, its predictions are skipped, and training goes on. The validation
images' features (the input of the classifier head: :mod:`epochscope.integrations.features`)
are logged with the logits as the epoch's embeddings when the model has such a head.

Per-image training statistics (the training-set label errors of docs/api.md) are recorded
when the callback is given the training set (``train_labels=`` or ``train_images=``, in the
order of the indices the training batches carry), the training batches are ``(inputs, labels,
dataset_indices)`` and ``training_step`` returns ``{"loss": loss, "logits": logits}``: Lightning
hands the callback what the step returns, never its forward pass. Where one of these is missing
the callback says once which, and what to change, and training goes on without them.

Per-epoch numbers are what they say: ``train_loss`` is the mean of the epoch's training-step
losses (weighted by batch size), ``lr`` the learning rate the epoch trained with (read at its
start, before an epoch-interval scheduler steps), and a training metric logged per step only
(``self.log`` in ``training_step`` defaults to ``on_step=True, on_epoch=False``: its value at
epoch end is the last batch's) is left out of the epoch's numbers, with a warning.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

import epochscope
from epochscope.gather import rank_and_world
from epochscope.integrations.features import NO_HEAD, FeatureTap

#: callback_metrics names taken as the epoch's train and validation loss
TRAIN_LOSS_KEYS = ("train_loss", "train/loss", "loss", "train_loss_epoch")
VAL_LOSS_KEYS = ("val_loss", "val/loss", "valid_loss", "validation_loss")


class EpochscopeCallback(pl.Callback):
    """Logs a Lightning run into ``runs_dir/name``; ``init_kwargs`` go to ``epochscope.init``
    (``val_images``, ``image_size``, ``mean``, ``std``, ``hierarchy``, ``devices``, ...)."""

    def __init__(
        self,
        name: str,
        runs_dir: str = "runs",
        *,
        classes: list[str] | list[tuple[str, str]],
        log_model: bool = True,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        epochscope.check_run_name(name)
        self.name, self.runs_dir, self.classes = name, runs_dir, classes
        self.log_model = log_model
        self.init_kwargs = init_kwargs
        self.run: epochscope.Run | None = None
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._indices: list[torch.Tensor] = []
        self._seen = 0
        self._example: torch.Tensor | None = None
        self._loss_sum: torch.Tensor | None = None
        self._loss_n = 0
        self._epoch_lr: float | None = None
        self._warned: set[str] = set()
        self._tap: FeatureTap | None = None
        self._features: list[torch.Tensor] = []
        self._features_ok = False

    # --- fit ------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        hparams = {k: v for k, v in dict(pl_module.hparams).items() if _jsonable(v)}
        kwargs = {"epochs": trainer.max_epochs or None, "arch": type(pl_module).__name__,
                  "hparams": hparams, **self.init_kwargs}  # fmt: skip
        self.run = epochscope.init(self.name, self.runs_dir, classes=self.classes, **kwargs)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is not None:
            self.run.finish()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.run is not None:
            stopped = isinstance(exception, KeyboardInterrupt)
            self.run.finish("stopped" if stopped else "failed", None if stopped else exception)

    # --- steps ----------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loss_sum, self._loss_n = None, 0
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        self._epoch_lr = float(lrs[0]) if lrs else None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            n = _batch_size(batch)
            part = loss.detach().float() * n  # summed on its device: no sync per step
            self._loss_sum = part if self._loss_sum is None else self._loss_sum + part
            self._loss_n += n
        if self.run is not None and self._train_stats_wanted:
            self._train_batch(outputs, batch)
        if self.run is None or trainer.global_step % max(1, trainer.log_every_n_steps):
            return
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        self.run.log_step(
            trainer.global_step,
            loss=float(loss) if isinstance(loss, torch.Tensor) else None,
            lr=lrs[0] if lrs else None,
            epoch=trainer.current_epoch + 1,
            epoch_step=batch_idx + 1,
            steps_per_epoch=_int_or_none(trainer.num_training_batches),
        )

    @property
    def _train_stats_wanted(self) -> bool:
        return "train_stats" not in self._warned

    def _train_batch(self, outputs: Any, batch: Any) -> None:
        """The step's logits and the batch's indices to ``log_train_batch``, or one warning
        naming what is missing (then no more tries)."""
        assert self.run is not None
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        missing = []
        if not self.run.records_train_stats:
            missing.append("the training set: pass train_labels=[...] or train_images=... to "
                           "EpochscopeCallback")  # fmt: skip
        if not (isinstance(logits, torch.Tensor) and logits.ndim == 2):
            missing.append('the logits: return {"loss": loss, "logits": logits} from '
                           "training_step")  # fmt: skip
        if not (isinstance(batch, list | tuple) and len(batch) > 2):
            missing.append("the images' indices: training batches of (inputs, labels, "
                           "dataset_indices)")  # fmt: skip
        if missing:
            self._warn_once(
                "train_stats",
                "EpochscopeCallback: no per-image training statistics (training-set label "
                f"errors, the data map) for this run; missing {'; '.join(missing)}.",
            )
            return
        self.run.log_train_batch(batch[2], logits.detach(), labels=batch[1])

    # --- validation -----------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logits, self._labels, self._indices, self._seen = [], [], [], 0
        self._has_indices = False
        if self._tap is None:
            self._tap = FeatureTap(pl_module, len(self.classes))
            if not self._tap.found:
                self._warn_once("no-head", self._no_head())
        self._tap.start()
        self._features, self._features_ok = [], self._tap.found

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if trainer.sanity_checking or dataloader_idx != 0:
            return
        x, y = batch[0], batch[1]
        logits = outputs.get("logits") if isinstance(outputs, dict) else outputs
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            with torch.no_grad():
                logits = pl_module(x)
        if self._example is None:
            self._example = x[:1].detach().cpu()
        self._logits.append(logits.detach().float().cpu())
        self._labels.append(y.detach().cpu())
        if self._features_ok and self._tap is not None:
            features = self._tap.take(len(y))
            self._features_ok = features is not None
            if features is None:
                self._warn_once("no-head", self._no_head())
            else:
                self._features.append(features)
        if len(batch) > 2:
            self._has_indices = True
            self._indices.append(torch.as_tensor(batch[2]).cpu())
        else:  # an unshuffled DistributedSampler: rank r holds rows r, r + W, r + 2W, ...
            rank, world = rank_and_world()
            n = torch.arange(self._seen, self._seen + len(y))
            self._indices.append(rank + n * world)
        self._seen += len(y)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._tap is not None:
            self._tap.stop()  # before log_model copies the module: no hook travels with it
        if trainer.sanity_checking or self.run is None or not self._logits:
            return
        epoch = trainer.current_epoch + 1
        if not self._has_indices and _shuffled(trainer):
            self._warn_once(
                "shuffled",
                "EpochscopeCallback: the validation DataLoader is shuffled (shuffle=True), so its "
                "rows come in a new order each epoch and cannot be matched to the validation "
                "images; this run's predictions are skipped. Fix: shuffle=False for the "
                "validation loader (or batches of (inputs, labels, dataset_indices)).",
            )
            if self.log_model and self.run.is_writer:
                self.run.log_model(epoch, pl_module, self._example)
            return
        logits = torch.cat(self._logits)
        labels = torch.cat(self._labels)
        indices = torch.cat(self._indices)
        features = torch.cat(self._features) if self._features_ok and self._features else None
        _, world = rank_and_world()
        if world > 1:
            total = _dataset_len(trainer)
            indices = indices % total  # the sampler's padding repeats the first rows
            labels_all = _gather_labels(labels, indices, total)
            self.run.log_predictions(
                epoch, logits, labels=labels_all, indices=indices, features=features
            )
        else:
            order = torch.argsort(indices)
            try:
                self.run.log_predictions(
                    epoch, logits[order], labels=labels[order],
                    features=features[order] if features is not None else None,
                )  # fmt: skip
            except ValueError as e:  # rows in another order than before: skipped, said once
                self._warn_once(
                    "order",
                    f"EpochscopeCallback: epoch {epoch}'s predictions are skipped: {e}. The "
                    "validation rows must come in the same order every epoch: use an "
                    "unshuffled validation DataLoader, or batches of (inputs, labels, "
                    "dataset_indices).",
                )
        if self.log_model and self.run.is_writer:
            self.run.log_model(epoch, pl_module, self._example)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if _scalar(v)}
        last_batch, forked = _step_only_metrics(trainer)
        for k in last_batch | forked:
            metrics.pop(k, None)
        train_loss = next((metrics.pop(k) for k in TRAIN_LOSS_KEYS if k in metrics), None)
        if self._loss_n:  # the epoch's mean training-step loss, measured here
            train_loss = float(self._loss_sum) / self._loss_n  # type: ignore[arg-type]
        val_loss = next((metrics.pop(k) for k in VAL_LOSS_KEYS if k in metrics), None)
        extra = {_key(k): v for k, v in metrics.items() if _key(k) not in _RESERVED}
        dropped = sorted(k for k in last_batch if k not in TRAIN_LOSS_KEYS)
        if dropped:
            self._warn_once(
                "step-only",
                f"EpochscopeCallback: {', '.join(dropped)} logged per step only, so at epoch end "
                "it holds the last batch's value; left out of the epoch's numbers. For an epoch "
                "mean log it with self.log(..., on_epoch=True).",
            )
        self.run.log_epoch(trainer.current_epoch + 1, train_loss=train_loss, val_loss=val_loss,
                           lr=self._epoch_lr, **extra)  # fmt: skip

    def _no_head(self) -> str:
        return NO_HEAD.format(who="EpochscopeCallback", classes=len(self.classes))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned and self.run is not None:
            self._warned.add(key)
            if self.run.is_writer:
                self.run.warn(message)


_RESERVED = {"epoch", "kind", "time", "val_top1", "val_top5", "epoch_seconds", "lr"}


def _batch_size(batch: Any) -> int:
    y = batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else None
    return len(y) if isinstance(y, torch.Tensor) and y.ndim >= 1 else 1


def _shuffled(trainer: pl.Trainer) -> bool:
    """True when the first validation loader's sampler deals rows in a random order."""
    loader = trainer.val_dataloaders
    loader = loader[0] if isinstance(loader, list | tuple) else loader
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler):
        return True
    if isinstance(sampler, torch.utils.data.DistributedSampler):
        return bool(sampler.shuffle)
    inner = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    return isinstance(inner, torch.utils.data.RandomSampler)


def _step_only_metrics(trainer: pl.Trainer) -> tuple[set[str], set[str]]:
    """(names the training hooks logged with on_epoch=False, whose callback_metrics value is
    the last batch's; the ``NAME_step`` twins of those logged both per step and per epoch).
    Read from Lightning's result collection; empty if that moved."""
    try:
        metas = [m.meta for m in trainer.fit_loop.epoch_loop._results.values()]
        only = {m.name for m in metas if not m.on_epoch}
        forked = {f"{m.name}_step" for m in metas if m.on_epoch and m.on_step}
    except AttributeError:
        return set(), set()
    return only, forked


def _key(name: str) -> str:
    return name.replace("/", "_")


def _scalar(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.numel() == 1 and bool(torch.isfinite(v))


def _jsonable(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | list | tuple) or v is None


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and np.isfinite(v) and v > 0 else None


def _dataset_len(trainer: pl.Trainer) -> int:
    loader = trainer.val_dataloaders
    loader = loader[0] if isinstance(loader, list | tuple) else loader
    return len(loader.dataset)


def _gather_labels(labels: torch.Tensor, indices: torch.Tensor, total: int) -> np.ndarray:
    from epochscope.gather import gather_logits

    out = gather_logits(labels[:, None].float(), indices, total)
    import torch.distributed as dist

    box = [out[:, 0].astype(np.int64) if out is not None else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
