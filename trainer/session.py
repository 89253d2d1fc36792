"""One training run's life in its run directory, the same for every engine.

An engine parses its command line with :mod:`trainer.options`, makes a session and hands it the
training function; the session returns the exit code::

    session = RunSession(args, explicit, argv, engine="pytorch", rank=rank, broadcast=bcast)
    return session.run(lambda: train(session))

and ``train`` reads top to bottom::

    index = discover(args.data)                  # a bad --data fails before RUNS is touched
    state = session.open((".pt",), load)         # lock, resume decision; session.args merged
    ...data, model, optimizer from session.args; ``state`` (None: a fresh start) loaded...
    session.begin(index, engine_version=..., world_size=..., devices=..., device_kind=...)
    for epoch in session.epochs():               # ``finished`` after the last one
        ...train one epoch (``on_step=partial(session.log_step, epoch)``), evaluate...
        session.record_epoch(epoch, TrainTotals(...), val, val_seconds=..., lr=..., onnx=...,
                             save=...)

What it owns: SIGTERM/SIGINT (status ``stopped``) and exit codes (``EXIT_*``); run.lock, taken by
rank 0 with a refusal broadcast to every rank; the resume decision (start, resume from the newest
checkpoint that loads, or refuse; the run's saved settings win over this command line except
runtime options given on it); status events that survive a full disk (said on stderr instead);
the device monitor; and each epoch's record in the documented order: predictions, ONNX model,
``epoch`` event, checkpoint, pruning (never the best epoch's model). Rank 0 writes through a
RunWriter and every other rank through a NullWriter, so engines never ask their rank. What an
engine supplies: build, train one epoch, evaluate, save and load a checkpoint, export ONNX.
No torch or MXNet import here: both engines use it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shlex
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epochscope.embeddings import embed
from epochscope.events import epoch_table
from epochscope.hierarchy import as_taxonomy
from epochscope.layout import (
    CHECKPOINTS,
    EMBEDDING_SUFFIX,
    EMBEDDINGS,
    HIERARCHY_TSV,
    LABEL_EDITS_HEADER,
    LABEL_EDITS_TSV,
    METRICS,
    MODEL_SUFFIX,
    MODELS,
    RUN_JSON,
    epoch_file,
    epochs_in,
)
from epochscope.lock import RunLockedError
from epochscope.predictions import LABEL_ARRAYS, accuracy
from epochscope.reader import MetricsLog, model_epochs, prediction_epochs, read_run_json
from epochscope.records import DataInfo, EpochEvent, Preprocess, RunInfo, StatusEvent, StepEvent
from epochscope.storage.location import redact
from epochscope.storage.writing import pull_for_writing, writing_place
from epochscope.writer import NullWriter, RunWriter, prune_epochs
from trainer import recipe
from trainer.datasets import MEAN, STD, DataError, DatasetIndex
from trainer.devices import DeviceMonitor
from trainer.label_edits import LabelEdits
from trainer.options import RUNTIME_OPTIONS, UsageError
from trainer.presets import INVOCATION_OPTIONS, is_synthetic_dataset

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3

#: ``load(path)`` of a checkpoint's marker file -> its state: a dict with ``epoch``, ``args``,
#: ``best`` and ``bad_images`` besides the engine's own keys; raises when torn or foreign
LoadCheckpoint = Callable[[Path], dict[str, Any]]
#: ``save(writer, epoch, meta)``: write every file of a checkpoint, the marker last
SaveCheckpoint = Callable[[RunWriter, int, dict[str, Any]], None]


class StopRequested(BaseException):
    """SIGTERM or SIGINT: leave with status ``stopped`` (a BaseException, so no ``except
    Exception`` on the way swallows it)."""


class AlreadyFinished(Exception):
    """A resumed run has trained all its epochs: nothing to do (exit 0)."""


@dataclass(frozen=True)
class TrainTotals:
    """One epoch of training, summed over every process and device."""

    loss_sum: float
    top1_sum: float
    top5_sum: float
    count: float  # readable images
    images: int  # images stepped through, unreadable ones included
    seconds: float
    bad: Sequence[int] = ()  # train-set indices of unreadable images


def newest_checkpoint(
    folder: Path, marker: str, load: LoadCheckpoint
) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest checkpoint that loads, and a note for each newer one that did not."""
    notes = []
    for epoch in reversed(epochs_in(folder, marker)):
        path = folder / epoch_file(epoch, marker)
        try:
            state = load(path)
            if state.get("epoch") != epoch:
                raise ValueError(f"it holds epoch {state.get('epoch')!r}")
            return path, state, notes
        except Exception as e:  # a torn or foreign file: fall back to an older one
            notes.append(f"checkpoint {path.name} does not load ({type(e).__name__}); skipped")
    return None, None, notes


def finished_epochs(run_dir: Path) -> list[int]:
    """Epochs a run has finished: an ``epoch`` event in metrics.jsonl (read by epochscope's one
    parser of it, which skips damaged lines), or their predictions or model on disk (a damaged
    log still leaves the files to protect)."""
    done = set(prediction_epochs(run_dir)) | set(model_epochs(run_dir))
    with contextlib.suppress(OSError, LookupError, ValueError):
        done |= set(epoch_table(MetricsLog(run_dir / METRICS).refresh()))
    return sorted(done)


def run_dir_of(args: argparse.Namespace) -> Path:
    """The run directory the session writes: under --runs-dir, or for a bucket its local
    staging copy (uploaded as it is written)."""
    local_runs, _ = writing_place(args.runs_dir)
    return local_runs.expanduser().resolve() / args.name


def jsonable_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | list)}


class RunSession:
    """A run directory's owner for one command (see the module docstring)."""

    def __init__(
        self,
        args: argparse.Namespace,
        explicit: set[str],
        argv: Sequence[str],
        *,
        engine: str,
        rank: int = 0,
        broadcast: Callable[[Any], Any] = lambda obj: obj,
        usage_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.args, self.explicit, self.argv = args, explicit, list(argv)
        self.engine, self.rank = engine, rank
        self.run_dir = run_dir_of(args)
        self.bucket = writing_place(args.runs_dir)[1]
        self.writer: RunWriter | NullWriter = (
            RunWriter(self.run_dir, bucket=self.bucket) if rank == 0 else NullWriter(self.run_dir)
        )
        self.start_epoch = self.epoch = 1
        self._broadcast = broadcast
        self._usage_errors = (UsageError, DataError, *usage_errors)
        self._closers: list[Callable[[], None]] = []
        self._monitor: DeviceMonitor | None = None
        self._started = False  # a final status is owed once the run has begun
        self._resuming = False
        self._suffixes: tuple[str, ...] = ()
        self._index: DatasetIndex | None = None
        self._best: dict[str, Any] = {"epoch": None, "val_top5": -1.0}
        self._bad: set[int] = set()

    # --- the command's frame ------------------------------------------------------------------
    def run(self, body: Callable[[], None]) -> int:
        """Run ``body`` under the session's signals; its outcome as an exit code."""
        previous = {s: signal.signal(s, _raise_stop) for s in _STOP_SIGNALS}
        try:
            body()
            return EXIT_OK
        except AlreadyFinished as e:
            self.say(str(e))
            return EXIT_OK
        except RunLockedError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_LOCKED
        except self._usage_errors as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except StopRequested:
            return self._end(self._end_stopped)
        except Exception as e:
            return self._end(functools.partial(self._end_failed, e))
        finally:
            if self._monitor is not None:
                self._monitor.stop()
            for close in reversed(self._closers):
                with contextlib.suppress(Exception):
                    close()
            self.writer.remove_pid_if_mine()
            self.writer.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _end(self, report: Callable[[], int]) -> int:
        """Report how the run ended with stop signals held: torchrun SIGTERMs every rank when
        one dies, and that signal must not cut the 'failed' status short (it did, and the run
        read as crashed). A stop that came before the signals were held is ignored too."""
        while True:
            try:
                for sig in _STOP_SIGNALS:
                    signal.signal(sig, _note_late_stop)
                return report()
            except StopRequested:  # raised before the handlers above were in place
                continue

    def _end_stopped(self) -> int:
        if self._started and not self._final_status("stopped"):
            return EXIT_FAILED
        self.say(f"stopped during epoch {self.epoch}")
        return EXIT_OK

    def _end_failed(self, e: Exception) -> int:
        text = "".join(traceback.format_exception(e))
        print(text, end="", file=sys.stderr)
        if self._started:
            self._final_status("failed", error=_one_line(e), traceback=text)
        print(f"error: training failed: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED

    def on_close(self, close: Callable[[], None]) -> None:
        """Call ``close`` when the command ends, whatever the outcome (newest first)."""
        self._closers.append(close)

    @property
    def interactive(self) -> bool:
        """Whether progress bars are wanted: rank 0 on a terminal."""
        return self.rank == 0 and sys.stderr.isatty()

    def say(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.rank == 0:
            print(message, flush=True)

    # --- lock and resume ------------------------------------------------------------------------
    def open(self, suffixes: Sequence[str], load: LoadCheckpoint) -> dict[str, Any] | None:
        """Take run.lock and decide: start (None), resume (the newest loadable checkpoint's
        state, on every rank) or refuse (UsageError). ``suffixes``: the checkpoint's files,
        the first marking a complete one. Afterwards ``self.args`` holds the run's settings."""
        self._suffixes = tuple(suffixes)
        refusal = unreachable = None
        if self.rank == 0:
            try:
                if self.bucket is not None:  # resuming where the bucket has more: fetch it
                    pull_for_writing(self.bucket, self.args.name, self.run_dir.parent)
                self.writer.acquire()
            except RunLockedError as e:
                refusal = str(e)
            except (OSError, ValueError) as e:  # the bucket: missing, no credentials, down
                unreachable = f"{redact(self.bucket or '')}: {type(e).__name__}: {e}"
        refusal, unreachable = self._broadcast((refusal, unreachable))
        if refusal:
            raise RunLockedError(refusal)
        if unreachable:
            raise UsageError(f"cannot write to {unreachable}")
        decision, state = self._decide(load) if self.rank == 0 else (None, None)
        decision = self._broadcast(decision)  # rank 0 decides, every rank loads the same
        if decision["error"]:
            raise UsageError(decision["error"])
        for note in decision["notes"]:
            self.say(f"warning: {note}")
        if decision["checkpoint"] and state is None:
            state = load(Path(decision["checkpoint"]))
        if decision["saved_args"]:
            self.args = self._merge(decision["saved_args"])
        self.start_epoch = self.epoch = state["epoch"] + 1 if state else 1
        if decision["resume"] and self.start_epoch > self.args.epochs:
            raise AlreadyFinished(
                f"run {self.args.name} has already finished its {self.args.epochs} epochs "
                "(raise --epochs to train longer); nothing to do"
            )
        self._resuming = decision["resume"]
        if state:
            best = state.get("best") or {}
            self._best = {"epoch": best.get("epoch"), "val_top5": best.get("val_top5", -1.0)}
            self._bad = set(state.get("bad_images", []))
        return state

    def _decide(self, load: LoadCheckpoint) -> tuple[dict[str, Any], dict[str, Any] | None]:
        args, run_dir = self.args, self.run_dir
        decision: dict[str, Any] = {
            "error": None, "resume": False, "checkpoint": None, "saved_args": None, "notes": [],
        }  # fmt: skip
        exists = (run_dir / RUN_JSON).exists()
        if args.resume and not exists:
            decision["error"] = f"no run {args.name!r} in {run_dir.parent} to resume"
        elif exists and not (args.resume or args.resume_or_start):
            decision["error"] = (
                f"run {args.name!r} already exists in {run_dir.parent}; pass --resume to "
                "continue it, or choose another --name"
            )
        if decision["error"] or not exists:
            return decision, None
        info: dict[str, Any] = {}
        with contextlib.suppress(LookupError, ValueError):
            info = read_run_json(run_dir)
        if info.get("engine", self.engine) != self.engine:
            decision["error"] = (
                f"run {args.name!r} was trained by the {info['engine']} engine; resume it "
                f"with --engine {info['engine']}"
            )
            return decision, None
        path, state, notes = newest_checkpoint(run_dir / CHECKPOINTS, self._suffixes[0], load)
        start = state["epoch"] + 1 if state else 1
        again = [e for e in finished_epochs(run_dir) if e >= start]
        if len(again) > 1:
            # A crash can leave one finished epoch without its checkpoint (killed between its
            # records and the checkpoint): that one is trained again. More means checkpoints
            # were lost, and training again would write over predictions and models.
            since = f"epoch {start - 1}'s" if state else "any"
            decision["error"] = (
                f"run {args.name!r} has finished epochs {again[0]}..{again[-1]} but no checkpoint "
                f"after {since} in {run_dir / CHECKPOINTS} loads, so resuming would train them "
                "again over their predictions and models; restore the checkpoints, or train "
                "under another --name"
            )
            decision["notes"] = notes
            return decision, None
        decision.update(resume=True, notes=notes, checkpoint=str(path) if path else None)
        decision["saved_args"] = state.get("args") if state else info.get("hparams")
        return decision, state

    def _merge(self, saved: dict[str, Any]) -> argparse.Namespace:
        """The saved run's settings, except runtime options given on this command line."""
        merged = argparse.Namespace(**vars(self.args))
        # a run from before recipes resumes as it was trained (the seed's stem and crops)
        for key, value in recipe.complete_saved(saved).items():
            if key in INVOCATION_OPTIONS or (key in RUNTIME_OPTIONS and key in self.explicit):
                continue
            current = getattr(self.args, key, None)
            if key in self.explicit and current != value:
                self.say(f"note: --{key.replace('_', '-')} {current} ignored on resume; "
                         f"the run uses {value}")  # fmt: skip
            setattr(merged, key, value)
        return merged

    # --- the run --------------------------------------------------------------------------------
    def begin(
        self,
        index: DatasetIndex,
        *,
        engine_version: str,
        world_size: int,
        devices: list[dict[str, Any]],
        device_kind: str,
        loader: str = "",
        edits: LabelEdits | None = None,
    ) -> None:
        """Write run.json, classes.tsv and val_index.tsv; the ``started`` or ``resumed``
        status; start the device monitor (``device_kind``: cuda or cpu). ``loader``: how the
        images are read (run.json's data.loader)."""
        a, self._index = self.args, index
        if getattr(a, "hierarchy", None):  # the run's own taxonomy (checked by validate)
            self.writer.write_bytes(HIERARCHY_TSV, as_taxonomy(Path(a.hierarchy)).tsv())
        self.writer.write_run_info(
            RunInfo(
                name=a.name, engine=self.engine, engine_version=engine_version, arch=a.arch,
                width=a.width, epochs=a.epochs, batch_size=a.batch_size,
                data=DataInfo(root=str(index.root), layout=index.layout,
                              num_classes=len(index.classes), num_train=len(index.train),
                              num_val=len(index.val),
                              synthetic=is_synthetic_dataset(index.root), loader=loader,
                              store=str(getattr(index, "store", None) or ""),
                              excluded=len(edits.excluded) if edits else 0,
                              relabelled=len(edits.relabelled) if edits else 0,
                              threshold_samples=len(edits.threshold) if edits else 0),
                preprocess=Preprocess(image_size=a.image_size,
                                      resize_size=recipe.eval_resize_size(a), mean=MEAN, std=STD),
                hparams=jsonable_args(a), world_size=world_size, devices=devices,
                command="python -m trainer train " + shlex.join(self.argv),
                host=socket.gethostname(), started=time.time(),
            )
        )  # fmt: skip
        self.writer.write_classes(index.classes, index.names)
        self.writer.write_val_index(index.val)
        if getattr(a, "train_stats", False):
            self.writer.write_train_index(index.train)
        if edits:  # what this run changed about its training set, row by row
            self.writer.write_tsv(LABEL_EDITS_TSV, LABEL_EDITS_HEADER, edits.rows())
            files = " ".join(f for f in (a.exclude, a.relabel) if f) or "--threshold-samples"
            self.say(f"training set: {edits.describe()} ({files})")
        self._started = True
        if self._resuming:
            self._status("resumed", self.start_epoch, from_epoch=self.start_epoch - 1)
        else:
            self._status("started", self.start_epoch)
        if self.rank == 0:
            self._monitor = DeviceMonitor(self.writer.event, device_kind, a.device_interval)
            self._monitor.epoch = self.start_epoch
            self._monitor.start()
        self.say(
            f"run {a.name} ({self.engine} {engine_version}): {a.arch} width {a.width} on "
            f"{world_size} x {device_kind}, {len(index.classes)} classes, {len(index.train)} "
            f"train / {len(index.val)} val images ({index.layout}), {a.image_size} px, "
            f"epochs {self.start_epoch}..{a.epochs}; writing {self.run_dir}"
        )

    def epochs(self) -> Iterator[int]:
        """The epochs still to train; the ``finished`` status after the last."""
        for epoch in range(self.start_epoch, self.args.epochs + 1):
            self.epoch = epoch
            if self._monitor is not None:
                self._monitor.epoch = epoch
            yield epoch
        self._status("finished", self.args.epochs)
        self._started = False
        self.say(f"finished {self.args.name}: {self.run_dir}")

    def log_step(self, epoch: int, fields: Mapping[str, Any]) -> None:
        """A ``step`` event from StepEvent's fields but ``step`` (derived here)."""
        step = (epoch - 1) * fields["steps_per_epoch"] + fields["epoch_step"]
        self.writer.event(StepEvent(epoch=epoch, step=step, **fields))

    def record_epoch(
        self,
        epoch: int,
        train: TrainTotals,
        val: Mapping[str, np.ndarray] | None,
        *,
        val_seconds: float,
        lr: float,
        onnx: Callable[[], bytes],
        save: SaveCheckpoint,
        train_stats: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Rank 0: the epoch's predictions, ONNX model (``onnx()``), ``epoch`` event and
        checkpoint (``save(writer, epoch, meta)``), in that order, then the keep policies.

        ``val``: every validation image once, in val_index order: ``top5`` and ``prob`` (top-k
        classes and probabilities, best first, k <= 5), ``loss`` and ``ok`` (readable) per
        image, and when the engine computed them the label arrays of
        :func:`epochscope.predictions.label_stats` with ``temperature``, and ``features``
        (the penultimate features [N, F]: stored as the epoch's embeddings) when the engine
        captured them, or ``embeddings`` it already computed from them
        (:class:`epochscope.embeddings.Embeddings`); None on the other ranks of a distributed
        job. ``train_stats``: the epoch's per-image training statistics in the stored form
        (:func:`epochscope.training_stats.dense`), written first."""
        if self.rank != 0 or val is None:
            return
        if train_stats is not None:
            self.writer.write_train_stats(epoch, dict(train_stats))
        new_bad = self._new_bad_images(train.bad, np.asarray(val["ok"], bool))
        if new_bad:
            message = f"skipped {len(new_bad)} unreadable image(s): " + ", ".join(new_bad[:5])
            message += " ..." if len(new_bad) > 5 else ""
            self.writer.event("warning", epoch, message=message, count=len(new_bad))
            print(f"warning: {message} ({len(self._bad)} so far)", file=sys.stderr)
        labels = np.array([label for _, label in self._index.val], dtype=np.int64)
        top5 = np.asarray(val["top5"])
        val_top1, val_top5 = accuracy(top5, labels)  # as epochscope.init's log_epoch counts
        stats = {k: val[k] for k in (*LABEL_ARRAYS, "temperature") if k in val}
        self.writer.write_predictions(epoch, top5, val["prob"], **stats)
        embedded = val.get("embeddings")  # an engine may have computed them on its device
        if embedded is None and val.get("features") is not None:
            embedded = embed(val["features"])
        if embedded is not None and len(embedded.vectors) == len(labels):
            self.writer.write_embeddings(epoch, embedded)
        self.writer.write_model(epoch, onnx())
        if val_top5 > self._best["val_top5"]:
            self._best = {"epoch": epoch, "val_top5": val_top5}
        n, seconds = max(train.count, 1), train.seconds + val_seconds
        record = EpochEvent(
            epoch=epoch, train_loss=train.loss_sum / n, train_top1=train.top1_sum / n,
            train_top5=train.top5_sum / n, val_loss=float(np.mean(val["loss"])), val_top1=val_top1,
            val_top5=val_top5, epoch_seconds=seconds,
            img_per_s=train.images / max(train.seconds, 1e-9),
            val_img_per_s=len(labels) / max(val_seconds, 1e-9), lr=lr,
            skipped_images=len(self._bad),
        )  # fmt: skip
        self.writer.event(record)
        meta = {"epoch": epoch, "args": jsonable_args(self.args), "best": self._best,
                "bad_images": sorted(self._bad)}  # fmt: skip
        save(self.writer, epoch, meta)
        self._prune()
        self.say(
            f"epoch {epoch}/{self.args.epochs}: train loss {record.train_loss:.3f} "
            f"top-5 {record.train_top5:.3f} | val loss {record.val_loss:.3f} "
            f"top-1 {val_top1:.3f} top-5 {val_top5:.3f} | {seconds:.1f} s, "
            f"{record.img_per_s:.0f} img/s train, {record.val_img_per_s:.0f} img/s val"
        )

    def _prune(self) -> None:
        folder = self.run_dir / CHECKPOINTS
        for epoch in epochs_in(folder, self._suffixes[0])[: -self.args.keep_checkpoints]:
            for suffix in self._suffixes:  # the marker first: a half-pruned one is no checkpoint
                with contextlib.suppress(FileNotFoundError):
                    (folder / epoch_file(epoch, suffix)).unlink()
        if self.args.keep_models:
            # an epoch's embeddings go with its model: a photo's neighbours need both
            for folder, suffix in ((MODELS, MODEL_SUFFIX), (EMBEDDINGS, EMBEDDING_SUFFIX)):
                prune_epochs(self.run_dir / folder, suffix, self.args.keep_models,
                             protect=self._best["epoch"])  # fmt: skip

    def _new_bad_images(self, train_bad: Sequence[int], val_ok: np.ndarray) -> list[str]:
        """Paths of unreadable images not reported before (train and val share one count)."""
        index, new = self._index, []
        keys = sorted(set(train_bad)) + [len(index.train) + int(i) for i in np.flatnonzero(~val_ok)]
        for key in keys:  # val indices offset past the train ones
            if key not in self._bad:
                self._bad.add(key)
                train = key < len(index.train)
                new.append(index.train[key][0] if train else index.val[key - len(index.train)][0])
        return new

    # --- status events --------------------------------------------------------------------------
    def _status(self, state: str, epoch: int, **fields: Any) -> None:
        event = StatusEvent(epoch, state, pid=os.getpid(), host=socket.gethostname(), **fields)
        self.writer.event(event)

    def _final_status(self, state: str, **fields: Any) -> bool:
        """The last status event; on a full or read-only disk say so on stderr instead."""
        try:
            self._status(state, self.epoch, **fields)
        except OSError as e:
            print(f"error: could not write the {state!r} status to "
                  f"{self.writer.root / METRICS}: {e}", file=sys.stderr)  # fmt: skip
            return False
        return True


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _raise_stop(signum: int, frame: Any) -> None:
    raise StopRequested(signal.Signals(signum).name)


def _note_late_stop(signum: int, frame: Any) -> None:
    print(f"{signal.Signals(signum).name} while the run's end is written: finishing that first",
          file=sys.stderr)  # fmt: skip


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
