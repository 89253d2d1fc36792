"""Log your own training loop into an Epochscope run directory: ``epochscope.init(...)``.

The run directory is the trainer's (docs/run-directory.md), written through the same
:class:`~epochscope.writer.RunWriter`; the dashboard tells them apart only by run.json's
``engine`` (``epochscope-api``). numpy and the standard library at import; torch is imported only
by :meth:`RunLogger.log_model` for a torch module, and torch.distributed only when a job runs one.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from epochscope import thumbnails
from epochscope.embeddings import check_features, embed
from epochscope.export import (
    check_onnx,
    eval_copy,
    example_of,
    export,
    logits_module,
    with_embedding,
)
from epochscope.gather import gather_logits, gather_to_rank0, rank_and_world, to_numpy
from epochscope.hierarchy import as_taxonomy
from epochscope.layout import HIERARCHY_TSV, RUN_JSON, THUMBNAILS, check_run_name
from epochscope.lock import RunLockedError
from epochscope.predictions import accuracy, label_stats, log_sum_exp, top5_from_logits
from epochscope.reader import (
    MetricsLog,
    epoch_table,
    read_classes,
    read_val_index,
)
from epochscope.records import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataInfo,
    Preprocess,
    RunInfo,
)
from epochscope.storage.location import redact
from epochscope.storage.writing import bucket_has, pull_for_writing, writing_place
from epochscope.training_stats import TrainStatsCollector, dense, gather_rows
from epochscope.writer import NullWriter, RunWriter

ENGINE = "epochscope-api"
VERSION = "0.1.0"
#: what init does when the run already exists (``if_exists=``)
IF_EXISTS = ("error", "resume", "replace", "new")
#: validation images the first log_model runs through the exported model (the self-check)
CHECK_IMAGES = 32


class EpochscopeWarning(UserWarning):
    """Something the run will miss or get wrong unless a setting changes; training goes on."""


class RunLogger:
    """One run being logged. Made by :func:`init`; use ``with`` or call :meth:`finish`."""

    def __init__(
        self,
        writer: RunWriter | NullWriter,
        wnids: list[str],
        labels: np.ndarray | None,
        image_size: int,
        done: set[int],
        predicted: set[int],
        steps_per_epoch: int | None,
        paths: list[str] | None = None,
        *,
        epoch_base: int = 1,
        preprocess: Preprocess | None = None,
        check_images: Any = None,
        train_labels: np.ndarray | None = None,
    ) -> None:
        self._writer = writer
        self._train_labels = train_labels  # the labels trained on, by training index
        self._train_labels_on: dict[Any, Any] = {}  # device -> the labels as a tensor there
        self._train_stats = (
            TrainStatsCollector(len(train_labels), len(wnids)) if train_labels is not None else None
        )
        self._paths = paths  # val image paths relative to data.root, when files
        self.epoch_base = epoch_base  # the number the caller's first epoch has (0 or 1)
        self._preprocess = preprocess
        self._check_images = check_images  # a few val images (paths or arrays) for log_model
        self._check_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # top-1, margin
        self._check_agreed: bool | None = None  # the last check's outcome (None: none yet)
        self._pending_check: tuple[int, Any] | None = None  # (epoch, Check) from the thread
        #: every model check of this session: {"epoch", "agree", "checked", "warned"}
        self.self_checks: list[dict[str, Any]] = []
        self._export: threading.Thread | None = None
        self._export_error: BaseException | None = None
        self.wnids = wnids
        self.labels = labels  # None until the first log_predictions gives them
        self.image_size = image_size
        self._done = done  # epochs with an epoch event
        self._predicted = predicted  # epochs with predictions (this session or before)
        # (val top-1, val top-5, val loss) of this session's predictions, until log_epoch
        self._logits: dict[int, tuple[float, float, float]] = {}
        self._steps_per_epoch = steps_per_epoch
        self._epoch_steps = 0
        self._epoch_start = time.time()
        self._monitor: Any = None
        self.finished = False

    # --- properties -----------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        """The run directory."""
        return self._writer.root

    @property
    def name(self) -> str:
        return self._writer.root.name

    @property
    def is_writer(self) -> bool:
        """True on the process that writes (rank 0 of a distributed job)."""
        return self._writer.enabled

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    @property
    def last_epoch(self) -> int:
        """The last epoch logged with :meth:`log_epoch` (0 before the first)."""
        return max(self._done, default=0)

    @property
    def epochs_logged(self) -> list[int]:
        """Epochs with an epoch event, ascending (those of an earlier session included)."""
        return sorted(self._done)

    @property
    def current_epoch(self) -> int:
        return self.last_epoch + 1

    # --- logging --------------------------------------------------------------------------
    def log_step(
        self,
        step: int,
        loss: float | None = None,
        lr: float | None = None,
        *,
        epoch: int | None = None,
        epoch_step: int | None = None,
        steps_per_epoch: int | None = None,
        **metrics: float,
    ) -> None:
        """One optimizer step's numbers (optional; the loss and lr curves between epochs).

        ``epoch`` defaults to the epoch after the last one logged; ``epoch_step`` counts the
        calls since then. ``steps_per_epoch`` (here or in :func:`init`) places the points on the
        epoch axis; without it, it is learnt from the first epoch."""
        self._check_open()
        step = _int_arg(step, "step", 0)
        epoch = self.current_epoch if epoch is None else self._epoch_arg(epoch)
        self._epoch_steps += 1
        k = self._epoch_steps if epoch_step is None else _int_arg(epoch_step, "epoch_step", 1)
        if steps_per_epoch is not None:
            self._steps_per_epoch = _int_arg(steps_per_epoch, "steps_per_epoch", 1)
        fields = {"step": step, "epoch_step": k, "steps_per_epoch": self._steps_per_epoch}
        for key, value in {"loss": loss, "lr": lr, **metrics}.items():
            if value is not None:
                fields[key] = _float_arg(value, key)
        self._writer.event("step", epoch, **{k: v for k, v in fields.items() if v is not None})

    @property
    def records_train_stats(self) -> bool:
        """Whether :meth:`log_train_batch` can record (``init`` was given the training set)."""
        return self._train_stats is not None

    def log_train_batch(self, indices: Any, logits: Any, labels: Any = None) -> None:
        """One training step's dataset ``indices`` ``[n]`` and the ``logits`` ``[n, classes]`` of
        the forward pass it trained on (numpy or torch, any device: a tensor stays there until
        the epoch ends, no host sync per step). ``labels``: the labels the step trained on,
        default the run's ``train_labels`` at ``indices``. At :meth:`log_epoch` each image's
        probability of its label, margin and preferred other class are written
        (docs/run-directory.md, train_stats/): AUM, the data map and forgetting come from them.
        Under torch.distributed every rank calls this and :meth:`log_epoch`; rank 0 gathers."""
        self._check_open()
        if self._train_stats is None:
            raise ValueError(
                "log_train_batch needs the training set: pass train_labels=[...] (and "
                "train_images for paths) to epochscope.init"
            )
        if labels is None:
            labels = self._train_labels_at(indices, logits)
        self._train_stats.add(indices, logits, labels)

    def _train_labels_at(self, indices: Any, logits: Any) -> Any:
        assert self._train_labels is not None
        if hasattr(logits, "detach"):  # a tensor: look the labels up on its device
            torch = sys.modules["torch"]
            on = self._train_labels_on.get(logits.device)
            if on is None:
                on = torch.as_tensor(self._train_labels, device=logits.device)
                self._train_labels_on[logits.device] = on
            return on[torch.as_tensor(indices).to(logits.device).long()]
        idx = to_numpy(indices).astype(np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self._train_labels)):
            raise ValueError(f"indices outside 0..{len(self._train_labels) - 1} (train_labels)")
        return self._train_labels[idx]

    def _write_train_stats(self, epoch: int) -> None:
        """The epoch's training statistics, gathered to rank 0 (every rank calls this)."""
        collector = self._train_stats
        if collector is None or not len(collector):
            return
        rows = gather_rows(collector.rows(), gather_to_rank0)
        if rows is not None and self.is_writer:
            stats = dense(rows, collector.num_train, collector.num_classes)
            self._writer.write_train_stats(epoch, stats)

    def log_predictions(
        self,
        epoch: int,
        logits: Any,
        *,
        labels: Any = None,
        indices: Any = None,
        features: Any = None,
    ) -> None:
        """The validation logits ``[N_val, classes]`` of an epoch, rows in validation order
        (numpy or torch, any device). Written as that epoch's top-5 and probabilities, with
        per image the probability of its label, the margin and the entropy, and the epoch's
        temperature (docs/run-directory.md).

        ``features``: the penultimate features ``[N_val, F]`` (what feeds the final linear
        layer), rows as the logits'; stored as the epoch's embeddings (a PCA to at most 128
        dimensions in float16, with its projection), for similar images and the map.

        ``labels``: the true classes ``[N_val]``, needed only when :func:`init` got neither
        labelled ``val_images`` nor ``val_labels``. ``indices``: under torch.distributed, each
        rank passes its share of the logits with their dataset indices; rank 0 gathers them in
        order (DistributedSampler's padding dropped) and writes. Every rank must call it then.
        """
        self._check_open()
        epoch = self._epoch_arg(epoch)
        if indices is not None:
            n = len(self.labels) if self.labels is not None else None
            if n is None and labels is None:
                raise ValueError("labels: needed with indices until the run knows its labels")
            if n is None:
                n = len(to_numpy(labels))
            logits = gather_logits(logits, indices, n)
            if features is not None:  # every rank passes features, or none does
                features = gather_logits(features, indices, n)
            if logits is None:  # not rank 0: its rows went to rank 0
                return
        if not self.is_writer:
            return
        logits = to_numpy(logits)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must be [N_val, {self.num_classes}] (one column per class in classes), "
                f"not {list(logits.shape)}"
            )
        if not np.isfinite(logits).all():
            raise ValueError(f"logits of epoch {epoch} hold NaN or infinite values")
        if labels is not None:
            self._set_labels(labels, len(logits))
        if self.labels is None:
            raise ValueError(
                "labels: the run knows no validation labels yet; pass labels= here, or "
                "val_images with labels / val_labels to epochscope.init"
            )
        if len(logits) != len(self.labels):
            raise ValueError(
                f"logits has {len(logits)} rows but the validation set has {len(self.labels)} "
                "images: pass every validation image once, in validation order"
            )
        if epoch in self._done:
            raise ValueError(
                f"epoch {self._shown(epoch)} was already logged (log predictions before log_epoch)"
            )
        if epoch in self._logits:
            raise ValueError(f"epoch {self._shown(epoch)}: predictions were already logged")
        if features is not None:  # checked before anything of the epoch is written
            features = check_features(to_numpy(features), len(self.labels))
        lse = log_sum_exp(logits)
        top5, prob = top5_from_logits(logits, lse)
        # label scores, entropy and the temperature: only the full logits have them
        self._writer.write_predictions(epoch, top5, prob, **label_stats(logits, self.labels))
        if features is not None:
            self._writer.write_embeddings(epoch, embed(features))
        self._predicted.add(epoch)
        if self._check_images is not None:
            k = min(CHECK_IMAGES, len(top5))
            self._check_rows[epoch] = (top5[:k, 0].astype(np.int64), prob[:k, 0] - prob[:k, 1])
        # what log_epoch needs, not the logits: accuracies and the mean cross-entropy
        top1_acc, top5_acc = accuracy(top5, self.labels)
        true = np.take_along_axis(logits, self.labels[:, None], axis=1).astype(np.float32)
        loss = float(np.mean(lse - true)) if len(true) else 0.0
        self._logits[epoch] = (top1_acc, top5_acc, loss)

    def log_model(
        self, epoch: int, model: Any, example_input: Any = None, *, check: bool = True
    ) -> None:
        """The epoch's model for the dashboard's photo classifier: a torch module (exported to
        ONNX, input ``input`` [batch, 3, S, S] with a dynamic batch, output ``logits``) or ONNX
        bytes with those names. ``example_input`` defaults to one zero image of image_size.

        A torch module is copied to the CPU here and exported on a background thread (joined by
        the next log_model and by finish), so the export does not hold up training. The first
        call after this epoch's log_predictions (``check=True``) runs the exported model on a
        few validation images prepared as the dashboard will (image_size, resize_size,
        interpolation, mean, std) and warns (:class:`EpochscopeWarning`) naming the setting when
        it disagrees with the logged predictions. Every later model logged after its epoch's
        predictions is checked too, on the export thread; a disagreement after an epoch that
        agreed warns again, naming the epoch (reported by the next log_model or finish)."""
        self._check_open()
        epoch = self._epoch_arg(epoch)
        if epoch in self._done:
            raise ValueError(
                f"epoch {self._shown(epoch)} was already logged (log the model before log_epoch)"
            )
        if not self.is_writer:
            return
        self._join_export()
        if isinstance(model, bytes | bytearray | memoryview):
            data = bytes(model)
            check_onnx(data, self.num_classes)
            self._writer.write_model(epoch, data)
            self._self_check(epoch, data, check)
            return
        if not (hasattr(model, "state_dict") and callable(model)):
            raise ValueError(
                f"model must be a torch.nn.Module or ONNX bytes, not {type(model).__name__}"
            )
        example = example_of(example_input, self.image_size)
        cpu = logits_module(eval_copy(model), example, self.num_classes)  # raises here
        cpu = with_embedding(cpu, example)  # a second output when the features are found
        rows = self._check_rows.pop(epoch, None) if check else None
        if rows is not None and self._check_agreed is None:
            data = export(cpu, example)  # the first one in line: the check needs it now
            check_onnx(data, self.num_classes)
            self._writer.write_model(epoch, data)
            self._report_check(epoch, self._run_check(data, rows))
            return

        def work() -> None:
            try:
                data = export(cpu, example)
                check_onnx(data, self.num_classes)
                self._writer.write_model(epoch, data)
                if rows is not None:  # reported in the caller's thread by _join_export
                    self._pending_check = (epoch, self._run_check(data, rows))
            except BaseException as e:  # raised in the caller's thread by _join_export
                self._export_error = e

        self._export = threading.Thread(target=work, name="epochscope-export", daemon=True)
        self._export.start()

    def _join_export(self) -> None:
        if self._export is not None:
            self._export.join()
            self._export = None
        if self._pending_check is not None:
            (epoch, result), self._pending_check = self._pending_check, None
            self._report_check(epoch, result)
        if self._export_error is not None:
            error, self._export_error = self._export_error, None
            raise error

    def _self_check(self, epoch: int, data: bytes, check: bool) -> None:
        rows = self._check_rows.pop(epoch, None)
        if check and rows is not None:
            self._report_check(epoch, self._run_check(data, rows))

    def _run_check(self, data: bytes, rows: tuple[np.ndarray, np.ndarray]) -> Any:
        if self._preprocess is None:
            return None
        from epochscope.selfcheck import check

        return check(data, self._check_images, rows, self._preprocess)

    def _report_check(self, epoch: int, result: Any) -> None:
        """Warn on the first disagreement and on one after an agreement (not every epoch)."""
        if result is None:  # could not be checked here
            return
        agreed = result.message is None
        warn = not agreed and self._check_agreed is not False
        self.self_checks.append({"epoch": self._shown(epoch), "agree": result.agree,
                                 "checked": result.checked, "warned": warn})  # fmt: skip
        if warn:
            again = " (an earlier epoch's model agreed)" if self._check_agreed else ""
            message = f"epoch {self._shown(epoch)}{again}: {result.message}"
            self._writer.event("warning", epoch, message=message[:2000])
            warnings.warn(message, EpochscopeWarning, stacklevel=4)
        self._check_agreed = agreed

    def log_epoch(
        self,
        epoch: int,
        train_loss: float | None = None,
        val_top1: float | None = None,
        val_top5: float | None = None,
        *,
        val_loss: float | None = None,
        train_top1: float | None = None,
        train_top5: float | None = None,
        lr: float | None = None,
        epoch_seconds: float | None = None,
        **metrics: float,
    ) -> dict[str, Any]:
        """The epoch's numbers: one point on each curve; returns the event written.

        Val accuracies and loss, when not given, come from this epoch's logged predictions.
        ``epoch_seconds`` defaults to the time since the previous epoch (or :func:`init`).
        Epochs must increase: an epoch logged twice is refused."""
        self._check_open()
        epoch = self._epoch_arg(epoch)
        if epoch in self._done:
            raise ValueError(f"epoch {self._shown(epoch)} was already logged")
        if epoch < self.last_epoch:
            raise ValueError(
                f"epoch {self._shown(epoch)} comes before the last epoch logged, "
                f"{self._shown(self.last_epoch)}"
            )
        self._write_train_stats(epoch)
        now = time.time()
        from_predictions = self._logits.pop(epoch, None)
        if from_predictions is not None:
            top1_acc, top5_acc, loss = from_predictions
            val_top1 = top1_acc if val_top1 is None else val_top1
            val_top5 = top5_acc if val_top5 is None else val_top5
            val_loss = loss if val_loss is None else val_loss
        fields: dict[str, Any] = {}
        given = {
            "train_loss": train_loss,
            "train_top1": train_top1,
            "train_top5": train_top5,
            "val_loss": val_loss,
            "val_top1": val_top1,
            "val_top5": val_top5,
            "lr": lr,
            "epoch_seconds": now - self._epoch_start if epoch_seconds is None else epoch_seconds,
            **metrics,
        }
        for key, value in given.items():
            if value is not None:
                fields[key] = _float_arg(value, key)
        for key in ("train_top1", "train_top5", "val_top1", "val_top5"):
            if key in fields and not 0.0 <= fields[key] <= 1.0:
                raise ValueError(f"{key} must be a fraction in 0..1, not {fields[key]}")
        record = self._writer.event("epoch", epoch, **fields) or {"epoch": epoch, **fields}
        self._done.add(epoch)
        if self._steps_per_epoch is None and self._epoch_steps:
            self._steps_per_epoch = self._epoch_steps  # learnt from the first epoch
        self._epoch_steps = 0
        self._epoch_start = now
        if self._monitor is not None:
            self._monitor.epoch = epoch + 1
        return record

    def warn(self, message: str) -> None:
        """Say something the run will miss, without stopping: an :class:`EpochscopeWarning` and
        a ``warning`` event in the run (the dashboard lists them)."""
        self._check_open()
        self._writer.event("warning", max(self.current_epoch, 1), message=str(message)[:2000])
        warnings.warn(message, EpochscopeWarning, stacklevel=2)

    # --- the end --------------------------------------------------------------------------
    def finish(self, state: str = "finished", error: BaseException | None = None) -> None:
        """Write the final status (``finished``, ``failed`` or ``stopped``) and release the run.
        Calling it again does nothing."""
        if self.finished:
            return
        self.finished = True
        if self._monitor is not None:
            self._monitor.stop()
        try:
            self._join_export()
        except Exception as e:  # the last model could not be written: the run says so
            if error is None:
                state, error = "failed", e
        try:
            fields: dict[str, Any] = {"state": state, "pid": os.getpid()}
            if error is not None:
                text = str(error).strip().splitlines()
                fields["error"] = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
                fields["traceback"] = "".join(
                    traceback.format_exception(type(error), error, error.__traceback__)
                )[-20000:]
            self._writer.event(
                "status", max(self.last_epoch, 1), host=socket.gethostname(), **fields
            )
        finally:
            self._writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("stopped")
        else:
            self.finish("failed", exc)

    def __repr__(self) -> str:
        return f"<epochscope.RunLogger {self.name!r} in {self.dir.parent} epoch {self.last_epoch}>"

    # --- internals ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError(f"run {self.name!r} is finished; start another with init")

    def _epoch_arg(self, epoch: Any) -> int:
        """The caller's epoch number (counted from epoch_base) as the run's 1-based one."""
        try:
            return _int_arg(epoch, "epoch", self.epoch_base) - self.epoch_base + 1
        except ValueError:
            if self.epoch_base == 1 and epoch == 0:
                raise ValueError(
                    "epoch must be an integer >= 1, not 0: to count epochs from 0, pass "
                    "epoch_base=0 to epochscope.init"
                ) from None
            raise

    def _shown(self, epoch: int) -> int:
        """A run epoch as the caller numbers it."""
        return epoch + self.epoch_base - 1

    def _set_labels(self, labels: Any, n: int) -> None:
        labels = _labels_arg(labels, self.num_classes, "labels")
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries but logits {n} rows")
        if self._paths is not None and len(self._paths) != n:
            raise ValueError(f"logits has {n} rows but val_images {len(self._paths)} images")
        if self.labels is None:
            paths = self._paths or [""] * n
            self._writer.write_val_index([(p, int(v)) for p, v in zip(paths, labels, strict=True)])
            self.labels = labels
        elif not np.array_equal(labels, self.labels):
            raise ValueError("labels differ from the validation labels this run was given")


# --- init -----------------------------------------------------------------------------------------
def init(
    name: str,
    runs_dir: str | os.PathLike[str] = "runs",
    *,
    classes: Sequence[str] | Sequence[tuple[str, str]],
    val_images: Any = None,
    val_labels: Any = None,
    hparams: Mapping[str, Any] | None = None,
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_size: int | None = None,
    interpolation: str = "bilinear",
    epochs: int | None = None,
    arch: str = "",
    batch_size: int = 0,
    num_train: int = 0,
    steps_per_epoch: int | None = None,
    hierarchy: Any = None,
    data_root: str | os.PathLike[str] | None = None,
    devices: bool | str = False,
    device_interval: float = 5.0,
    resume: bool = False,
    if_exists: str = "error",
    epoch_base: int = 1,
    labels_later: bool = False,
    storage_options: dict[str, Any] | None = None,
    train_images: Any = None,
    train_labels: Any = None,
) -> RunLogger:
    """Start (or with ``resume=True`` continue) run ``name`` in ``runs_dir``.

    ``classes``: class names in index order, or (id, name) pairs (ImageNet wnids as ids give
    WordNet order and bands). ``val_images``: the validation set in validation order, as image
    paths, (path, label) pairs, an object with ``.samples`` (torchvision's ImageFolder), or an
    array ``[N, H, W, 3]`` uint8 (thumbnails are then stored in the run directory). Labels come
    from the pairs, or ``val_labels``, or later from ``log_predictions(labels=...)``.
    ``image_size``, ``mean``, ``std``, ``resize_size`` (default 256/224 of image_size) and
    ``interpolation``: how the classifier page prepares a photo for the logged model.
    ``hierarchy``: a hierarchy TSV path or ``{class: group}`` mapping (order and bands of the
    confusion matrix). ``devices``: True (or "cuda"/"cpu") samples device memory and use into
    the run. Under torch.distributed only rank 0 writes; the other ranks get a RunLogger that writes
    nothing. Errors (ValueError, RunLockedError, FileExistsError) name the argument at fault.

    ``epochs``: how many epochs the run will have (the dashboard shows "epoch k of N").
    ``epoch_base``: the number your loop gives its first epoch, 1 (default) or 0; every
    ``epoch`` argument is then counted from it. ``if_exists``: when run ``name`` exists,
    ``"error"`` (default), ``"resume"`` (add to it; ``resume=True`` says the same),
    ``"replace"`` (start over: the old run is deleted) or ``"new"`` (a new name, ``name-2``,
    ``name-3``...; :attr:`RunLogger.name` tells which). ``labels_later=True``: ``val_images``
    are paths without labels on purpose, the labels come with the first
    ``log_predictions(labels=...)``; without it such paths are refused here rather than after a
    whole epoch.

    ``train_images`` and/or ``train_labels``: the training set in the order of the indices your
    loader yields (paths or (path, label) pairs or an ImageFolder, as ``val_images``; labels
    as ``val_labels``). With them, :meth:`RunLogger.log_train_batch` records each training
    image's statistics every epoch, for the training-set label errors and the data map.

    ``runs_dir`` may be a bucket (``s3://bucket/runs``, ``az://``, ``gs://``; credentials and
    endpoints from the usual environment variables or ``storage_options``): the run is written
    to a local copy under EPOCHSCOPE_CACHE_DIR and uploaded as it grows, off the training
    thread; resuming a bucket run fetches it first.
    """
    check_run_name(name)
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {', '.join(IF_EXISTS)}, not {if_exists!r}")
    if resume:
        if_exists = "resume"
    if epoch_base not in (0, 1) or isinstance(epoch_base, bool):
        raise ValueError(f"epoch_base must be 0 or 1 (your first epoch's number), not {epoch_base}")
    wnids, names = _classes_arg(classes)
    root, samples, images = _val_arg(val_images, data_root)
    labels = None
    if samples is not None and all(label is not None for _, label in samples):
        labels = _labels_arg([label for _, label in samples], len(wnids), "val_images")
    if val_labels is not None:
        given = _labels_arg(val_labels, len(wnids), "val_labels")
        if labels is not None and not np.array_equal(given, labels):
            raise ValueError("val_labels differ from the labels in val_images")
        labels = given
    if samples is not None and labels is None and not labels_later:
        raise ValueError(
            "val_images: paths without labels; pass (path, label) pairs, an ImageFolder, or "
            "val_labels=[...] with them (or labels_later=True and log_predictions(labels=...))"
        )
    paths = [p for p, _ in samples] if samples is not None else None
    train = _train_arg(train_images, train_labels, len(wnids), root, data_root)
    if train is not None and not root:
        root = train[0]
    n_val = len(samples) if samples is not None else len(images) if images is not None else None
    if labels is not None and n_val is not None and len(labels) != n_val:
        raise ValueError(f"val_labels has {len(labels)} entries but val_images {n_val}")
    pre = Preprocess(
        image_size=_int_arg(image_size, "image_size", 1),
        resize_size=_int_arg(
            resize_size if resize_size is not None else int(image_size * 256 / 224),
            "resize_size",
            image_size,
        ),
        interpolation=interpolation,
        mean=_triple_arg(mean, "mean"),
        std=_triple_arg(std, "std"),
        jpeg_draft=False,  # the user's own pipeline decodes at full scale
    )
    taxonomy = as_taxonomy(hierarchy) if hierarchy is not None else None
    epochs = _int_arg(epochs, "epochs", 0) if epochs is not None else 0

    rank, world = rank_and_world()
    local_runs, bucket = writing_place(runs_dir)
    shown_runs = redact(os.fspath(runs_dir)) if bucket else str(local_runs)
    if if_exists == "new" and rank == 0:
        name = _free_name(local_runs, name, bucket, storage_options)
    elif if_exists == "new" and world > 1:
        import torch.distributed as dist

        box = [None]
        dist.broadcast_object_list(box, src=0)
        name = str(box[0])
    run_dir = local_runs / name
    if bucket is not None and rank == 0:
        pull_for_writing(bucket, name, local_runs, storage_options)
    writer: RunWriter | NullWriter = (
        RunWriter(run_dir, bucket=bucket, storage_options=storage_options)
        if rank == 0
        else NullWriter(run_dir)
    )
    done: set[int] = set()
    predicted: set[int] = set()
    if rank == 0:
        if if_exists == "new" and world > 1:
            import torch.distributed as dist

            dist.broadcast_object_list([name], src=0)
        exists = (run_dir / RUN_JSON).is_file()
        if exists and if_exists == "error":
            raise FileExistsError(
                f"name: run {name!r} already exists in {shown_runs}; pass "
                "if_exists='resume' (or resume=True) to continue it, if_exists='replace' to "
                "start over, if_exists='new' for a fresh name, or choose another name"
            )
        try:
            writer.acquire()
        except RunLockedError as e:
            raise RunLockedError(f"name: run {name!r} is being written: {e}") from None
        if exists and if_exists == "replace":
            _clear_run(run_dir)
            writer.start_over()
            exists = False
        try:
            if exists:
                labels = _resume_checks(run_dir, wnids, labels)
                done = set(epoch_table(_events(run_dir)))
                from epochscope.reader import prediction_epochs

                predicted = set(prediction_epochs(run_dir))
            info = RunInfo(
                name=name,
                engine=ENGINE,
                engine_version=VERSION,
                arch=arch or "custom",
                epochs=epochs,
                batch_size=_int_arg(batch_size, "batch_size", 0),
                data=DataInfo(
                    root=root,
                    layout="arrays" if images is not None else "files" if root else "none",
                    num_classes=len(wnids),
                    num_train=len(train[2])
                    if train is not None
                    else _int_arg(num_train, "num_train", 0),
                    num_val=n_val
                    if n_val is not None
                    else len(labels)
                    if labels is not None
                    else 0,
                ),
                preprocess=pre,
                hparams=dict(hparams or {}),
                world_size=world,
                devices=_device_names(devices),
                command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:10000]
                if sys.argv and sys.argv[0]
                else "",
                host=socket.gethostname(),
                started=time.time(),
            )
            writer.write_run_info(info)
            writer.write_classes(wnids, names)
            if labels is not None:
                writer.write_val_index(
                    [(paths[i] if paths else "", int(v)) for i, v in enumerate(labels)]
                )
            if train is not None:
                _, train_paths, train_y = train
                writer.write_train_index(list(zip(train_paths, train_y.tolist(), strict=True)))
            if images is not None:
                writer.write_bytes(THUMBNAILS, thumbnails.thumbnails_bytes(images))
            if taxonomy is not None:
                writer.write_bytes(HIERARCHY_TSV, taxonomy.tsv())
            if exists:
                writer.event("status", max(done, default=0) + 1, state="resumed",
                             from_epoch=max(done, default=0), pid=os.getpid(),
                             host=socket.gethostname())  # fmt: skip
            else:
                writer.event("status", 1, state="started", pid=os.getpid(),
                             host=socket.gethostname())  # fmt: skip
        except BaseException:
            writer.close()
            raise
    # unlabelled paths: val_index.tsv is written when log_predictions brings the labels
    check_images: Any = None
    if images is not None:
        check_images = images[:CHECK_IMAGES]
    elif paths is not None:
        check_images = [str(Path(root) / p) for p in paths[:CHECK_IMAGES]]
    run = RunLogger(writer, wnids, labels, image_size, done, predicted, steps_per_epoch, paths,
              epoch_base=epoch_base, preprocess=pre, check_images=check_images,
              train_labels=train[2] if train is not None else None)  # fmt: skip
    if devices and rank == 0:
        from epochscope.devices import DeviceMonitor

        kind = devices if isinstance(devices, str) else _default_device()
        run._monitor = DeviceMonitor(writer.event, kind, interval=device_interval)
        run._monitor.epoch = run.current_epoch
        run._monitor.start()
    return run


# --- argument checks ------------------------------------------------------------------------------
def _int_arg(value: Any, what: str, low: int) -> int:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, not {value!r}")
    return value


def _float_arg(value: Any, what: str) -> float:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # a 0-d tensor or numpy scalar
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {type(value).__name__} {value!r:.80}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, not {value}")
    return value


def _triple_arg(value: Any, what: str) -> tuple[float, float, float]:
    try:
        a, b, c = (_float_arg(v, what) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be three numbers (R, G, B), not {value!r}") from None
    return (a, b, c)


def _classes_arg(classes: Any) -> tuple[list[str], list[str]]:
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence) or not classes:
        raise ValueError("classes must be a non-empty list of class names or (id, name) pairs")
    wnids, names = [], []
    for i, c in enumerate(classes):
        if isinstance(c, str):
            wnid, name = c, c
        elif isinstance(c, tuple | list) and len(c) == 2 and all(isinstance(x, str) for x in c):
            wnid, name = c
        else:
            raise ValueError(f"classes[{i}] must be a name or an (id, name) pair, not {c!r:.80}")
        if not wnid.strip() or "\x00" in wnid + name:
            raise ValueError(f"classes[{i}] is empty or holds a NUL character")
        wnids.append(wnid)
        names.append(name)
    if len(set(wnids)) != len(wnids):
        dup = next(w for w in wnids if wnids.count(w) > 1)
        raise ValueError(f"classes names {dup!r} twice: class ids must be unique")
    return wnids, names


def _labels_arg(labels: Any, num_classes: int, what: str) -> np.ndarray:
    a = to_numpy(labels)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ValueError(f"{what}: labels must be integers [N], not {a.dtype} {list(a.shape)}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(
            f"{what}: labels must be class indices 0..{num_classes - 1} (one per name in "
            f"classes), found {int(a.min())}..{int(a.max())}"
        )
    return a


def _val_arg(
    val_images: Any, data_root: str | os.PathLike[str] | None
) -> tuple[str, list[tuple[str, int | None]] | None, np.ndarray | None]:
    """(data root, [(path relative to it, label or None)] or None, images array or None)."""
    if val_images is None:
        return "", None, None
    if hasattr(val_images, "samples") and not isinstance(val_images, np.ndarray):
        val_images = val_images.samples  # torchvision ImageFolder / DatasetFolder
    if isinstance(val_images, np.ndarray) or hasattr(val_images, "detach"):
        return "", None, thumbnails.as_images(val_images)
    if isinstance(val_images, str | bytes) or not isinstance(val_images, Sequence):
        raise ValueError(
            "val_images must be a list of image paths or (path, label) pairs, an ImageFolder, "
            f"or an array [N, H, W, 3], not {type(val_images).__name__}"
        )
    items: list[tuple[Path, int | None]] = []
    for i, v in enumerate(val_images):
        if isinstance(v, str | os.PathLike):
            items.append((Path(v), None))
        elif isinstance(v, tuple | list) and len(v) == 2 and isinstance(v[0], str | os.PathLike):
            items.append((Path(v[0]), int(v[1])))
        else:
            raise ValueError(
                f"val_images[{i}] must be a path or a (path, label) pair, not {v!r:.80}"
            )
    if not items:
        raise ValueError("val_images is empty")
    paths = [p.resolve() for p, _ in items]
    if data_root is not None:
        root = Path(data_root).resolve()
    else:
        root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    rel = []
    for p in paths:
        if not p.is_relative_to(root):
            raise ValueError(f"val_images: {p} is not under data_root {root}")
        rel.append(p.relative_to(root).as_posix())
    return str(root), [(r, label) for r, (_, label) in zip(rel, items, strict=True)], None


def _train_arg(
    train_images: Any, train_labels: Any, num_classes: int, root: str, data_root: Any
) -> tuple[str, list[str], np.ndarray] | None:
    """(data root, training paths relative to it, labels) of init's training-set arguments,
    None without them; paths are "" when only labels are given."""
    if train_images is None and train_labels is None:
        return None
    labels = None
    paths: list[str] | None = None
    if train_images is not None:
        base, samples, images = _val_arg(train_images, data_root if data_root else root or None)
        if images is not None:
            raise ValueError("train_images: paths, (path, label) pairs or an ImageFolder")
        assert samples is not None
        if root and base != root:
            raise ValueError(
                f"train_images lie under {base}, the validation images under {root}: pass "
                "data_root= a folder that holds both"
            )
        root = base
        paths = [p for p, _ in samples]
        if all(label is not None for _, label in samples):
            labels = _labels_arg([v for _, v in samples], num_classes, "train_images")
    if train_labels is not None:
        given = _labels_arg(train_labels, num_classes, "train_labels")
        if labels is not None and not np.array_equal(given, labels):
            raise ValueError("train_labels differ from the labels in train_images")
        labels = given
    if labels is None:
        raise ValueError("train_images: paths without labels; pass train_labels=[...] as well")
    if paths is not None and len(paths) != len(labels):
        raise ValueError(f"train_labels has {len(labels)} entries but train_images {len(paths)}")
    return root, paths if paths is not None else [""] * len(labels), labels


def _resume_checks(run_dir: Path, wnids: list[str], labels: np.ndarray | None) -> np.ndarray | None:
    """The saved run must have the same classes (and labels, when both know them)."""
    saved = [w for _, w, _ in read_classes(run_dir)]
    if saved != wnids:
        raise ValueError(
            f"classes do not match run {run_dir.name!r}: it has {len(saved)} classes "
            f"({', '.join(saved[:3])}...), given {len(wnids)} ({', '.join(wnids[:3])}...)"
        )
    try:
        saved_labels, _ = read_val_index(run_dir)
    except LookupError:
        return labels
    if labels is not None and not np.array_equal(saved_labels, labels):
        raise ValueError(f"val_labels differ from those of run {run_dir.name!r}")
    return saved_labels if labels is None else labels


def _free_name(
    runs_dir: Path, name: str, bucket: str | None = None, options: dict[str, Any] | None = None
) -> str:
    """``name``, or ``name-2``, ``name-3``, ... : the first no run has (here or in the bucket)."""

    def taken(candidate: str) -> bool:
        here = (runs_dir / candidate).exists()
        return here or (bucket is not None and bucket_has(bucket, candidate, options))

    if not taken(name):
        return name
    for n in range(2, 100_000):
        candidate = f"{name[: 64 - len(str(n)) - 1]}-{n}"
        if not taken(candidate):
            return candidate
    raise FileExistsError(f"name: no free name {name}-N in {bucket or runs_dir}")


def _clear_run(run_dir: Path) -> None:
    """Delete what a run wrote, keeping run.lock (held by this writer now)."""
    for child in run_dir.iterdir():
        if child.name == "run.lock":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _events(run_dir: Path) -> list[dict[str, Any]]:
    log = MetricsLog(run_dir / "metrics.jsonl")
    log.refresh()
    return log.events


def _default_device() -> str:
    torch = sys.modules.get("torch")
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def _device_names(devices: bool | str) -> list[dict[str, Any]]:
    if not devices:
        return []
    from epochscope.devices import device_names

    kind = devices if isinstance(devices, str) else _default_device()
    return device_names(kind)
