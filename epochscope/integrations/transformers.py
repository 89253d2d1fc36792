"""Hugging Face ``Trainer``: a ``TrainerCallback`` plus the ``compute_metrics`` that lets it see
the predictions (callbacks alone never receive them)::

    cb = EpochscopeTrainerCallback("my-run", classes=names, image_size=224, mean=..., std=...)
    trainer = Trainer(model, args, ..., callbacks=[cb], compute_metrics=cb.compute_metrics)

``compute_metrics`` receives the whole evaluation set's logits in order, already gathered across
processes by the Trainer (padding dropped); wrap your own with ``cb.wrap(your_fn)``. Each
evaluation then logs the predictions, the model as ONNX (input ``input``: the model's first
argument, e.g. ``pixel_values``) and the epoch's numbers (``eval_*`` metrics; ``train_loss``: the
mean of the epoch's logged training losses, weighted by the steps each covers); training logs
become step events. Use ``eval_strategy="epoch"``.

The validation images' features (the input of the classifier head, e.g. ``classifier``:
:mod:`epochscope.integrations.features`) are logged with the logits as the epoch's embeddings
when the model has such a head and one process evaluates (under several processes the hook's rows
are one process's share: embeddings are left out, with a warning).

Per-image training statistics (the training-set label errors of docs/api.md) need the training
step's logits and the images' indices, and a ``Trainer`` shows its callbacks neither (and its
collator drops dataset columns the model does not take). Give the callback the training set
(``train_labels=``) and record them in ``compute_loss``::

    class RecordingTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kw):
            index = inputs.pop("index")  # the dataset yields {"pixel_values", "labels", "index"}
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kw)
            if model.training:
                cb.run.log_train_batch(index, outputs["logits"].detach(), inputs["labels"])
            return (loss, outputs) if return_outputs else loss

    RecordingTrainer(..., args=TrainingArguments(..., remove_unused_columns=False))

Without ``compute_metrics=cb.compute_metrics`` the callback warns when training starts (it finds
the Trainer that calls it) and still logs every evaluation's ``eval_*`` numbers per epoch; only
the predictions (confusion matrix) and the model are missing then.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from transformers import TrainerCallback

import epochscope
from epochscope.gather import to_numpy
from epochscope.integrations.features import NO_HEAD, FeatureTap

_RESERVED = {"epoch", "kind", "time", "val_loss", "val_top1", "val_top5", "epoch_seconds"}


class EpochscopeTrainerCallback(TrainerCallback):
    """Logs a ``transformers.Trainer`` run into ``runs_dir/name``; ``init_kwargs`` go to
    ``epochscope.init`` (``val_images``, ``image_size``, ``mean``, ``std``, ``hierarchy``...)."""

    def __init__(
        self,
        name: str,
        runs_dir: str = "runs",
        *,
        classes: list[str] | list[tuple[str, str]],
        log_model: bool = True,
        **init_kwargs: Any,
    ) -> None:
        epochscope.check_run_name(name)
        self.name, self.runs_dir, self.classes = name, runs_dir, classes
        self.log_model = log_model
        self.init_kwargs = init_kwargs
        self.run: epochscope.Run | None = None
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._train_loss: float | None = None
        self._losses: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])  # sum, steps
        self._last_log_step = 0
        self._user_metrics: Callable[[Any], dict] | None = None
        self._no_predictions_said = False
        self._tap: FeatureTap | None = None

    # --- what the Trainer calls with the predictions ------------------------------------------
    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        """Keep the evaluation's logits and labels for on_evaluate; returns the user's metrics
        (see :meth:`wrap`) or none."""
        logits = eval_pred.predictions
        logits = logits[0] if isinstance(logits, tuple | list) else logits
        self._pending = (to_numpy(logits), to_numpy(eval_pred.label_ids))
        return dict(self._user_metrics(eval_pred)) if self._user_metrics else {}

    def wrap(self, compute_metrics: Callable[[Any], dict]) -> Callable[[Any], dict]:
        """Your own ``compute_metrics``, with the predictions also going to Epochscope."""
        self._user_metrics = compute_metrics
        return self.compute_metrics

    # --- callback events ----------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        hparams = {k: v for k, v in args.to_dict().items() if _plain(v)}
        epochs = math.ceil(args.num_train_epochs) if args.max_steps <= 0 else None
        kwargs = {"epochs": epochs, "arch": type(model).__name__ if model is not None else "",
                  "hparams": hparams, **self.init_kwargs}  # fmt: skip
        self.run = epochscope.init(self.name, self.runs_dir, classes=self.classes, **kwargs)
        if not self.run.is_writer:
            return
        self._start_tap(args, model)
        trainer = _calling_trainer()
        wired = getattr(getattr(trainer, "compute_metrics", None), "__self__", None) is self
        if trainer is not None and not wired:
            self._no_predictions_said = True
            self.run.warn(
                "EpochscopeTrainerCallback: the Trainer has no compute_metrics=cb.compute_metrics "
                "(or cb.wrap(your_fn)), so callbacks never see the predictions: the run gets each "
                "evaluation's eval_* numbers but no confusion matrix and no model. Pass "
                "compute_metrics=cb.compute_metrics to Trainer(...)."
            )
        strategy = str(getattr(args, "eval_strategy", "epoch")).rsplit(".", 1)[-1].lower()
        if strategy == "no":
            self.run.warn(
                "EpochscopeTrainerCallback: eval_strategy is 'no', so no epoch is ever evaluated "
                "and the run will have no epochs; pass eval_strategy='epoch' to TrainingArguments."
            )

    def _start_tap(self, args: Any, model: Any) -> None:
        if model is None or self.run is None:
            return
        who = "EpochscopeTrainerCallback"
        if getattr(args, "world_size", 1) > 1:
            self.run.warn(
                f"{who}: {args.world_size} processes evaluate, so the classifier head's inputs "
                "in each are that process's share of the rows: no validation embeddings are "
                "stored (similar images need one process); predictions are logged as before"
            )
            return
        self._tap = FeatureTap(model, len(self.classes))
        if not self._tap.found:
            self.run.warn(NO_HEAD.format(who=who, classes=len(self.classes)))
            self._tap = None
            return
        self._tap.start()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any):
        if self._tap is not None:  # rows of a predict() outside evaluation: not this epoch's
            self._tap.clear()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if self.run is None or not logs or "loss" not in logs:
            return
        self._train_loss = float(logs["loss"])
        # HF's "loss" is the mean since its last log: weight it by the steps it covers
        steps = max(1, state.global_step - self._last_log_step)
        self._last_log_step = state.global_step
        box = self._losses[self._epoch(state, during=True)]
        box[0] += self._train_loss * steps
        box[1] += steps
        lr = logs.get("learning_rate")
        self.run.log_step(
            state.global_step, loss=self._train_loss, lr=float(lr) if lr is not None else None,
            epoch=self._epoch(state, during=True),
            steps_per_epoch=_steps_per_epoch(state, args),
        )  # fmt: skip

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict | None = None, model: Any = None,
        **kw: Any,
    ):  # fmt: skip
        if self.run is None:
            return
        pending, self._pending = self._pending, None
        epoch = self._epoch(state)
        if epoch in self.run.epochs_logged:
            return  # a second evaluation in one epoch (eval_steps): the first one counts
        if pending is not None:
            logits, labels = pending
            features = self._tap.take(len(logits)) if self._tap is not None else None
            self.run.log_predictions(
                epoch, logits, labels=labels.astype(np.int64), features=features
            )
            if self.log_model and model is not None and self.run.is_writer:
                if self._tap is not None:
                    self._tap.stop()  # the export copies the model: no hook travels with it
                self.run.log_model(epoch, model, self._example(kw))
                if self._tap is not None:
                    self._tap.start()
        elif not self._no_predictions_said and self.run.is_writer:
            self._no_predictions_said = True
            self.run.warn(
                "EpochscopeTrainerCallback: this evaluation gave no predictions (compute_metrics "
                "is not cb.compute_metrics): the run gets the eval_* numbers only. Pass "
                "compute_metrics=cb.compute_metrics to Trainer(...)."
            )
        total, steps = self._losses.pop(epoch, (0.0, 0.0))
        train_loss = total / steps if steps else self._train_loss
        metrics = dict(metrics or {})
        val_loss = metrics.pop("eval_loss", None)
        extra = {}
        for k, v in metrics.items():
            key = "val_" + k.removeprefix("eval_")
            if isinstance(v, int | float) and math.isfinite(v) and key not in _RESERVED:
                extra[key] = float(v)
        self.run.log_epoch(epoch, train_loss=train_loss, val_loss=val_loss, **extra)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any):
        if self._tap is not None:
            self._tap.stop()
        if self.run is not None:
            self.run.finish()

    # --- internals ----------------------------------------------------------------------------
    def _epoch(self, state: Any, during: bool = False) -> int:
        """1-based epoch: the one in progress (step logs) or just finished (evaluation)."""
        e = float(state.epoch or 0.0)
        if during:
            # 0.33 -> 1; 1.0 (the last step of epoch 1) -> 1; 1.5 -> 2
            return math.floor(e) + 1 if e % 1 > 1e-6 or e == 0 else round(e)
        return max(1, math.ceil(e - 1e-6))

    def _example(self, kw: dict) -> Any:
        loader = kw.get("eval_dataloader") or kw.get("train_dataloader")
        if loader is None:
            return None
        batch = next(iter(loader))
        first = batch.get("pixel_values") if isinstance(batch, dict) else batch[0]
        return first[:1].cpu() if first is not None else None


def _calling_trainer() -> Any:
    """The ``transformers.Trainer`` whose callback handler is calling us (callbacks are not
    given it), found up the stack; None if not there."""
    frame = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if hasattr(owner, "callback_handler") and hasattr(owner, "compute_metrics"):
            return owner
        frame = frame.f_back
    return None


def _steps_per_epoch(state: Any, args: Any) -> int | None:
    if state.max_steps and args.num_train_epochs and args.max_steps <= 0:
        return max(1, round(state.max_steps / math.ceil(args.num_train_epochs)))
    return None


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)
