"""``python -m trainer train``: train a ResNet on an image-folder dataset into a run directory.

Reads top to bottom like the torchvision classification reference: arguments, distributed
set-up, data, model, optimizer and schedule, resume, then the epoch loop (set the sampler's
epoch, train, evaluate, write predictions, the ONNX model, the epoch event and a checkpoint).
Everything that lands in the run directory goes through ``epochscope.writer`` (rank 0 only).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shlex
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from epochscope.layout import METRICS, RUN_JSON, check_run_name, epoch_file, epoch_of
from epochscope.lock import RunLockedError
from epochscope.reader import read_run_json
from epochscope.records import DataInfo, Preprocess, RunInfo
from epochscope.writer import NullWriter, RunWriter
from trainer import background
from trainer.data import (
    MEAN,
    STD,
    DataError,
    DatasetIndex,
    ImageDataset,
    Normalize,
    build_loader,
    cpu_threads,
    discover,
    eval_pipeline,
    train_pipeline,
)
from trainer.devices import DeviceMonitor, device_names
from trainer.distributed import (
    DistInfo,
    all_reduce_sum,
    broadcast_object,
    gather_objects,
    gather_predictions,
    init_distributed,
    shutdown,
)
from trainer.export import onnx_bytes
from trainer.models import UnknownModelError, create_model, list_models
from trainer.presets import DEMO_PRESET, INVOCATION_OPTIONS, is_synthetic_dataset
from trainer.schedules import SCHEDULES, Schedule, build_scheduler

# options a resumed run takes from this command line when given; the rest come from the run
RUNTIME_OPTIONS = frozenset(
    {
        "workers", "device", "amp", "channels_last", "compile", "log_interval",
        "device_interval", "keep_checkpoints", "keep_models", "epochs",
    }
)  # fmt: skip


class UsageError(ValueError):
    """A problem with the command line or the run directory, told in one line."""


class StopRequested(BaseException):
    """SIGTERM or SIGINT: leave with status ``stopped`` (a BaseException, so no ``except
    Exception`` on the way swallows it)."""


# --- arguments ----------------------------------------------------------------------------------
def get_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer train",
        description="Train a ResNet on an image-folder dataset (ImageNet layouts included), "
        "streaming curves, top-5 predictions and ONNX models to RUNS/NAME for the dashboard. "
        "Defaults follow the seed: ResNet-18 v2, batch 144, 30 epochs, SGD with momentum, "
        "top-5 accuracy as the headline metric. Run under torchrun for several GPUs or nodes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
    )
    d = (lambda v: argparse.SUPPRESS) if suppress_defaults else (lambda v: v)

    run = p.add_argument_group("run")
    run.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="dataset root: train/<wnid>/*.JPEG with val/<wnid>/ or a flat val/ "
        "and LOC_val_solution.csv; or any <class>/*.jpg folders",
    )
    run.add_argument(
        "--runs-dir", default=d("runs"), metavar="RUNS", help="folder holding run directories"
    )
    run.add_argument("--name", required=True, help="run name; the run directory is RUNS/NAME")
    run.add_argument(
        "--engine",
        choices=("pytorch", "mxnet"),
        default=d("pytorch"),
        help="mxnet: train with MXNet 1.9.1 in .venv-mxnet (make install-mxnet); "
        "`--engine mxnet --help` lists its options",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        default=d(False),
        help="continue NAME from its newest checkpoint, with its saved settings",
    )
    run.add_argument(
        "--resume-or-start",
        action="store_true",
        default=d(False),
        help="resume NAME when it exists, else start it",
    )
    run.add_argument(
        "--background",
        action="store_true",
        default=d(False),
        help="start detached: output to RUNS/NAME/train.log, pid in trainer.pid",
    )
    run.add_argument(
        "--demo",
        action="store_true",
        default=d(False),
        help="preset for the demo dataset: "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in DEMO_PRESET.items())
        + " (explicit options still win)",
    )

    model = p.add_argument_group("model")
    model.add_argument(
        "--arch", default=d("resnet18_v2"), help=f"architecture: {', '.join(list_models())}"
    )
    model.add_argument(
        "--width", type=float, default=d(1.0), help="channel multiplier (0.5 halves every stage)"
    )

    data = p.add_argument_group("data")
    data.add_argument(
        "--image-size",
        type=int,
        default=d(224),
        metavar="S",
        help="training crop and evaluation size, pixels",
    )
    data.add_argument(
        "--workers",
        type=int,
        default=d(min(8, os.cpu_count() or 1)),
        help="data-loading processes per trainer process (0: load in-process)",
    )
    data.add_argument(
        "--min-crop-scale",
        type=float,
        default=d(0.08),
        help="smallest area fraction of the random resized crop",
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        default=d(0.1),
        help="share of each class held out when the data has no val/ folder",
    )

    opt = p.add_argument_group("optimization")
    opt.add_argument("--epochs", type=int, default=d(30), help="total epochs of the run")
    opt.add_argument(
        "--batch-size",
        type=int,
        default=d(144),
        help="global batch, split over all processes (the seed's 144 was 4 x 36)",
    )
    opt.add_argument("--lr", type=float, default=d(0.1), help="base learning rate (SGD)")
    opt.add_argument("--momentum", type=float, default=d(0.9))
    opt.add_argument("--weight-decay", type=float, default=d(1e-4))
    opt.add_argument("--label-smoothing", type=float, default=d(0.0))

    sched = p.add_argument_group("learning-rate schedule")
    sched.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default=d("step"),
        help="step: multiply by --lr-gamma at --lr-steps; factor: multiply by "
        "--lr-factor after every epoch; cosine: cosine decay to --min-lr-factor",
    )
    sched.add_argument(
        "--lr-steps",
        type=_int_list,
        default=d([10, 20]),
        metavar="E,E",
        help="epochs at which 'step' multiplies the rate by --lr-gamma",
    )
    sched.add_argument("--lr-gamma", type=float, default=d(0.1))
    sched.add_argument(
        "--lr-factor", type=float, default=d(0.94), help="'factor': the per-epoch multiplier"
    )
    sched.add_argument(
        "--min-lr-factor",
        type=float,
        default=d(0.0),
        help="'cosine': the final rate as a fraction of --lr",
    )
    sched.add_argument(
        "--warmup-epochs",
        type=float,
        default=d(0.0),
        help="linear warm-up from a tenth of --lr (fractions allowed)",
    )

    dev = p.add_argument_group("devices")
    dev.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d("auto"))
    dev.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        default=d(True),
        help="CUDA: train in float32 instead of bf16 autocast",
    )
    dev.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default=d(True),
        help="keep the NCHW memory format (channels_last is faster on CUDA and CPU)",
    )
    dev.add_argument(
        "--compile",
        action="store_true",
        default=d(False),
        help="CUDA: torch.compile the model (slow first epoch, faster after)",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--keep-checkpoints",
        type=int,
        default=d(2),
        metavar="K",
        help="checkpoints kept (newest first)",
    )
    out.add_argument(
        "--keep-models",
        type=int,
        default=d(0),
        metavar="K",
        help="ONNX models kept (0: all); the best epoch's is never deleted",
    )
    out.add_argument(
        "--log-interval",
        type=int,
        default=d(10),
        metavar="STEPS",
        help="a step event every this many optimizer steps",
    )
    out.add_argument(
        "--device-interval",
        type=float,
        default=d(5.0),
        metavar="SECONDS",
        help="a device event every this many seconds",
    )
    out.add_argument("--seed", type=int, default=d(0))
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 10,20, got {text!r}") from None


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, set[str]]:
    """The resolved arguments and the names the user gave explicitly."""
    parser = get_parser()
    args = parser.parse_args(argv)
    explicit = set(vars(get_parser(suppress_defaults=True).parse_args(argv)))
    if args.demo:
        for key, value in DEMO_PRESET.items():
            if key not in explicit:
                setattr(args, key, value)
    return args, explicit


def validate(args: argparse.Namespace) -> None:
    try:
        check_run_name(args.name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.arch not in list_models():
        raise UnknownModelError(
            f"unknown architecture {args.arch!r}; choose from: {', '.join(list_models())}"
        )
    checks = [
        (args.epochs >= 1, "--epochs must be at least 1"),
        (args.batch_size >= 1, "--batch-size must be at least 1"),
        (args.image_size >= 16, "--image-size must be at least 16"),
        (args.width > 0, "--width must be positive"),
        (args.workers >= 0, "--workers must be 0 or more"),
        (args.lr > 0, "--lr must be positive"),
        (0 < args.min_crop_scale <= 1, "--min-crop-scale must be in (0, 1]"),
        (args.keep_checkpoints >= 1, "--keep-checkpoints must be at least 1"),
        (args.keep_models >= 0, "--keep-models must be 0 (all) or more"),
        (args.log_interval >= 1, "--log-interval must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


# --- one epoch of training, one evaluation ------------------------------------------------------
def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    normalize: Normalize,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    epoch: int,
    label_smoothing: float,
    amp: bool,
    world_size: int,
    log_interval: int,
    on_step: Callable[[dict[str, Any]], None],
    progress: bool,
) -> dict[str, Any]:
    """Train for one pass over ``loader``; return the epoch's summed counts (this rank) and
    the indices of images that could not be read."""
    model.train()
    device = normalize.device
    steps = len(loader)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, images
    window = torch.zeros(4, dtype=torch.float64, device=device)
    bad: list[int] = []
    start = window_start = time.perf_counter()
    window_images = 0
    bar = _progress_bar(steps, f"epoch {epoch} train", progress)
    for i, (images, labels, indices, ok) in enumerate(loader, 1):
        if not ok.all():
            bad += indices[~ok].tolist()
        x = normalize(images)
        y = labels.to(device, non_blocking=True)
        keep = ok.to(device, non_blocking=True).float()
        lr = optimizer.param_groups[0]["lr"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        per_image = F.cross_entropy(
            logits.float(), y, reduction="none", label_smoothing=label_smoothing
        )
        # unreadable images stay in the batch (every DDP rank must step) but weigh nothing
        loss = (per_image * keep).sum() / keep.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

        with torch.no_grad():
            hit1, hit5 = _hits(logits.detach(), y)
            counts = torch.stack(
                [(per_image.detach() * keep).sum(), (hit1 * keep).sum(), (hit5 * keep).sum(),
                 keep.sum()]
            ).double()  # fmt: skip
            sums += counts
            window += counts
        window_images += len(labels)
        if i % log_interval == 0 or i == steps:
            # the one host sync of the window: counts stay on the device in between
            w_loss, _, _, w_n = window.tolist()
            _, s1, s5, s_n = sums.tolist()
            now = time.perf_counter()
            rate = window_images * world_size / max(now - window_start, 1e-9)
            on_step(
                {
                    "epoch_step": i,
                    "steps_per_epoch": steps,
                    "loss": w_loss / max(w_n, 1),
                    "lr": lr,
                    "img_per_s": rate,
                    "top1": s1 / max(s_n, 1),
                    "top5": s5 / max(s_n, 1),
                }
            )
            bar.set_postfix(
                loss=f"{w_loss / max(w_n, 1):.3f}", top1=f"{s1 / max(s_n, 1):.3f}",
                top5=f"{s5 / max(s_n, 1):.3f}", img_s=f"{rate:.0f}",
            )  # fmt: skip
            window.zero_()
            window_images, window_start = 0, now
        bar.update(1)
    bar.close()
    loss_sum, top1, top5, n = sums.tolist()
    return {
        "loss_sum": loss_sum,
        "top1_sum": top1,
        "top5_sum": top5,
        "count": n,
        "images": steps * loader.batch_size,
        "seconds": time.perf_counter() - start,
        "bad": bad,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, normalize: Normalize, *, amp: bool, progress: bool
) -> dict[str, np.ndarray]:
    """This rank's share of the validation predictions: per image its index, top-5 classes and
    probabilities, loss and whether the file could be read."""
    model.eval()
    device = normalize.device
    out: dict[str, list] = {k: [] for k in ("index", "top5", "prob", "loss", "ok")}
    bar = _progress_bar(len(loader), "validate", progress)
    for images, labels, indices, ok in loader:
        x = normalize(images)
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        logits = logits.float()
        k = min(5, logits.shape[1])
        prob, top = logits.softmax(dim=1).topk(k, dim=1)
        # stay on the device: a .cpu() per batch would stall the GPU queue every batch
        out["index"].append(indices.numpy())
        out["top5"].append(top)
        out["prob"].append(prob)
        out["loss"].append(F.cross_entropy(logits, y, reduction="none"))
        out["ok"].append(ok.numpy())
        bar.update(1)
    bar.close()
    if not out["index"]:
        return {k: np.zeros(0) for k in out}
    on_device = {k: torch.cat(out[k]).cpu().numpy() for k in ("top5", "prob", "loss")}
    return {
        "index": np.concatenate(out["index"]),
        "top5": _pad5(on_device["top5"], -1),
        "prob": _pad5(on_device["prob"], 0.0),
        "loss": on_device["loss"],
        "ok": np.concatenate(out["ok"]),
    }


def _hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    match = top == y[:, None]
    return match[:, 0].float(), match.any(dim=1).float()


def _pad5(a: np.ndarray, fill: float) -> np.ndarray:
    # fewer than five classes: pad the columns so the file keeps its [N, 5] shape
    if a.shape[1] >= 5:
        return a
    return np.concatenate([a, np.full((a.shape[0], 5 - a.shape[1]), fill, a.dtype)], axis=1)


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


# --- checkpoints ------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(v):
    return tuple(_as_tuple(x) for x in v) if isinstance(v, list | tuple) else v


def newest_checkpoint(run_dir: Path) -> tuple[Path | None, dict | None, list[str]]:
    """The newest checkpoint that loads, and a note for each newer one that did not."""
    notes = []
    found = sorted(
        (p for p in (run_dir / "checkpoints").glob("epoch-*.pt") if epoch_of(p) is not None),
        key=epoch_of,
        reverse=True,
    )
    for path in found:
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True), notes
        except Exception as e:  # a torn or foreign file: fall back to an older one
            notes.append(f"checkpoint {path.name} does not load ({type(e).__name__}); skipped")
    return None, None, notes


def prune(folder: Path, pattern: str, keep: int, protect: int | None = None) -> list[Path]:
    """Delete the oldest epoch files beyond ``keep`` (never epoch ``protect``)."""
    files = sorted((p for p in folder.glob(pattern) if epoch_of(p) is not None), key=epoch_of)
    removable = [p for p in files if epoch_of(p) != protect]
    excess = len(files) - keep
    gone = removable[: max(0, excess)]
    for p in gone:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return gone


# --- the run ------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = parse_args(argv)
    try:
        validate(args)
    except (UsageError, UnknownModelError) as e:
        return _fail_usage(e)
    run_dir = Path(args.runs_dir).expanduser().resolve() / args.name
    if args.background:
        return background.launch(argv, run_dir)

    dist_info = init_distributed(args.device)
    writer: RunWriter | NullWriter = (
        RunWriter(run_dir) if dist_info.is_main else NullWriter(run_dir)
    )
    ctx: dict[str, Any] = {"epoch": 1, "started": False, "monitor": None}
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(args, explicit, argv, dist_info, writer, ctx)
    except (UsageError, DataError, UnknownModelError, RunLockedError) as e:
        return _fail_usage(e, 3 if isinstance(e, RunLockedError) else 2)
    except StopRequested:
        if ctx["started"] and not _final_status(writer, ctx["epoch"], state="stopped"):
            return 1
        _say(dist_info, f"stopped during epoch {ctx['epoch']}")
        return 0
    except Exception as e:
        traceback.print_exc()
        if ctx["started"]:
            _final_status(writer, ctx["epoch"], state="failed", error=_one_line(e),
                          traceback=traceback.format_exc())  # fmt: skip
        print(f"error: training failed: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        if ctx["monitor"] is not None:
            ctx["monitor"].stop()
        writer.remove_pid_if_mine()
        writer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutdown()


def run(
    args: argparse.Namespace,
    explicit: set[str],
    argv: list[str],
    dist_info: DistInfo,
    writer: RunWriter | NullWriter,
    ctx: dict[str, Any],
) -> int:
    device = dist_info.device
    cuda = device.type == "cuda"
    if not cuda and "OMP_NUM_THREADS" not in os.environ:  # an explicit setting wins
        torch.set_num_threads(cpu_threads(args.workers))
    run_dir = writer.root

    # the data first: a bad --data fails before anything is created in RUNS
    index = discover(args.data, args.val_fraction)

    # one trainer per run directory: rank 0 takes the lock and tells the others how it went
    refusal = None
    if dist_info.is_main:
        try:
            writer.acquire()
        except RunLockedError as e:
            refusal = str(e)
    refusal = broadcast_object(refusal)
    if refusal:
        raise RunLockedError(refusal)

    # resume or start: rank 0 decides, every rank loads the same checkpoint
    decision = _resume_decision(args, run_dir) if dist_info.is_main else None
    decision = broadcast_object(decision)
    if decision["error"]:
        raise UsageError(decision["error"])
    for note in decision["notes"]:
        _say(dist_info, f"warning: {note}")
    checkpoint = None
    if decision["checkpoint"]:
        checkpoint = torch.load(decision["checkpoint"], map_location="cpu", weights_only=True)
    if decision["saved_args"]:
        args = _merge_saved_args(args, decision["saved_args"], explicit, dist_info)
    start_epoch = checkpoint["epoch"] + 1 if checkpoint else 1
    if decision["resume"] and start_epoch > args.epochs:
        _say(dist_info, f"run {args.name} has already finished its {args.epochs} epochs "
             f"(raise --epochs to train longer); nothing to do")  # fmt: skip
        return 0
    if checkpoint is None:
        torch.manual_seed(args.seed)
        random.seed(args.seed)

    # data
    world = dist_info.world_size
    if args.batch_size < world:
        raise UsageError(f"--batch-size {args.batch_size} is smaller than the {world} processes")
    batch = args.batch_size // world
    train_set = ImageDataset(
        index.root, index.train, train_pipeline(args.image_size, args.min_crop_scale)
    )
    val_set = ImageDataset(index.root, index.val, eval_pipeline(args.image_size))
    train_sampler = DistributedSampler(
        train_set, num_replicas=world, rank=dist_info.rank, shuffle=True, seed=args.seed
    )
    # no shuffling: each rank reads every world-th image; the padding repeats are dropped later
    val_sampler = DistributedSampler(
        val_set, num_replicas=world, rank=dist_info.rank, shuffle=False
    )
    train_loader = build_loader(
        train_set, batch, train_sampler, args.workers, train=True, pin_memory=cuda
    )
    val_loader = build_loader(
        val_set, 2 * batch, val_sampler, args.workers, train=False, pin_memory=cuda
    )
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise DataError(
            f"{len(index.train)} training images make less than one batch of "
            f"{args.batch_size}; lower --batch-size"
        )

    # model, optimizer, schedule
    channels_last = args.channels_last  # faster on CPU too (oneDNN): 1.8x at 2 threads
    amp = cuda and args.amp
    model = create_model(args.arch, num_classes=len(index.classes), width=args.width)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    schedule = Schedule(
        name=args.lr_schedule, epochs=args.epochs, factor=args.lr_factor,
        milestones=tuple(args.lr_steps), gamma=args.lr_gamma,
        warmup_epochs=args.warmup_epochs, min_factor=args.min_lr_factor,
    )  # fmt: skip
    scheduler = build_scheduler(optimizer, schedule, steps_per_epoch)
    best = {"epoch": None, "val_top5": -1.0}
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"])
        best = dict(checkpoint.get("best", best))
    train_model: nn.Module = model
    if dist_info.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )
    if args.compile and cuda:
        train_model = torch.compile(train_model)
    normalize = Normalize(device, channels_last)

    # the run directory's fixed files, then the status event
    if dist_info.is_main:
        _write_run_files(writer, args, argv, index, dist_info, device)
    ctx["epoch"] = start_epoch
    ctx["started"] = True
    host = socket.gethostname()
    if decision["resume"]:
        writer.event("status", start_epoch, state="resumed", from_epoch=start_epoch - 1,
                     pid=os.getpid(), host=host)  # fmt: skip
    else:
        writer.event("status", start_epoch, state="started", pid=os.getpid(), host=host)
    if dist_info.is_main:
        monitor = DeviceMonitor(writer.event, device.type, args.device_interval)
        monitor.epoch = start_epoch
        monitor.start()
        ctx["monitor"] = monitor
    _say(
        dist_info,
        f"run {args.name}: {args.arch} width {args.width} on {world} x {device.type}, "
        f"{len(index.classes)} classes, {len(index.train)} train / {len(index.val)} val images "
        f"({index.layout}), {args.image_size} px, epochs {start_epoch}..{args.epochs}; "
        f"writing {run_dir}",
    )

    progress = dist_info.is_main and sys.stderr.isatty()
    bad_images: set[int] = set(checkpoint.get("bad_images", [])) if checkpoint else set()
    val_labels = np.array([label for _, label in index.val], dtype=np.int64)
    for epoch in range(start_epoch, args.epochs + 1):
        ctx["epoch"] = epoch
        if ctx["monitor"] is not None:
            ctx["monitor"].epoch = epoch
        train_sampler.set_epoch(epoch)
        global_step0 = (epoch - 1) * steps_per_epoch

        def on_step(fields: dict[str, Any], epoch: int = epoch, step0: int = global_step0):
            writer.event("step", epoch, step=step0 + fields["epoch_step"], **fields)

        stats = train_one_epoch(
            train_model, train_loader, normalize, optimizer, scheduler,
            epoch=epoch, label_smoothing=args.label_smoothing, amp=amp, world_size=world,
            log_interval=args.log_interval, on_step=on_step, progress=progress,
        )  # fmt: skip
        loss_sum, top1, top5, count = all_reduce_sum(
            [stats["loss_sum"], stats["top1_sum"], stats["top5_sum"], stats["count"]], device
        )
        train_bad = gather_objects(stats["bad"])

        val_start = time.perf_counter()
        # the unwrapped model: identical weights on every rank, no collectives needed
        local = evaluate(model, val_loader, normalize, amp=amp, progress=progress)
        val = gather_predictions(
            local["index"], len(val_set), top5=local["top5"], prob=local["prob"],
            loss=local["loss"], ok=local["ok"],
        )  # fmt: skip
        val_seconds = time.perf_counter() - val_start
        if not dist_info.is_main:
            continue

        # rank 0 from here on: metrics, predictions, model, checkpoint
        new_bad = _new_bad_images(train_bad, val, bad_images, index)
        if new_bad:
            message = f"skipped {len(new_bad)} unreadable image(s): " + ", ".join(new_bad[:5])
            message += " ..." if len(new_bad) > 5 else ""
            writer.event("warning", epoch, message=message, count=len(new_bad))
            print(f"warning: {message} ({len(bad_images)} so far)", file=sys.stderr)
        top5_idx = val["top5"].astype(np.int16)
        val_top1 = float(np.mean(top5_idx[:, 0] == val_labels))
        val_top5 = float(np.mean((top5_idx == val_labels[:, None]).any(axis=1)))
        writer.write_npz(
            f"predictions/{epoch_file(epoch, '.npz')}",
            top5=top5_idx, prob=val["prob"].astype(np.float16),
        )  # fmt: skip
        writer.write_bytes(
            f"models/{epoch_file(epoch, '.onnx')}", onnx_bytes(model, args.image_size)
        )
        if val_top5 > best["val_top5"]:
            best = {"epoch": epoch, "val_top5": val_top5}
        epoch_seconds = stats["seconds"] + val_seconds
        record = writer.event(
            "epoch", epoch,
            train_loss=loss_sum / max(count, 1), train_top1=top1 / max(count, 1),
            train_top5=top5 / max(count, 1), val_loss=float(np.mean(val["loss"])),
            val_top1=val_top1, val_top5=val_top5, epoch_seconds=epoch_seconds,
            img_per_s=stats["images"] * world / max(stats["seconds"], 1e-9),
            val_img_per_s=len(val_set) / max(val_seconds, 1e-9),
            lr=optimizer.param_groups[0]["lr"], skipped_images=len(bad_images),
        )  # fmt: skip
        write_torch(
            writer,
            f"checkpoints/{epoch_file(epoch, '.pt')}",
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "args": _jsonable_args(args),
                "best": best,
                "bad_images": sorted(bad_images),
            },
        )
        prune(run_dir / "checkpoints", "epoch-*.pt", args.keep_checkpoints)
        if args.keep_models:
            prune(run_dir / "models", "epoch-*.onnx", args.keep_models, protect=best["epoch"])
        _say(
            dist_info,
            f"epoch {epoch}/{args.epochs}: train loss {record['train_loss']:.3f} "
            f"top-5 {record['train_top5']:.3f} | val loss {record['val_loss']:.3f} "
            f"top-1 {val_top1:.3f} top-5 {val_top5:.3f} | {epoch_seconds:.1f} s, "
            f"{record['img_per_s']:.0f} img/s train, {record['val_img_per_s']:.0f} img/s val",
        )

    writer.event("status", args.epochs, state="finished", pid=os.getpid(), host=host)
    ctx["started"] = False
    _say(dist_info, f"finished {args.name}: {run_dir}")
    return 0


def _resume_decision(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Start, resume (from which checkpoint, with which saved settings) or refuse."""
    exists = (run_dir / RUN_JSON).exists()
    decision: dict[str, Any] = {
        "error": None, "resume": False, "checkpoint": None, "saved_args": None, "notes": [],
    }  # fmt: skip
    if args.resume and not exists:
        decision["error"] = f"no run {args.name!r} in {run_dir.parent} to resume"
        return decision
    if exists and not (args.resume or args.resume_or_start):
        decision["error"] = (
            f"run {args.name!r} already exists in {run_dir.parent}; pass --resume to continue "
            "it, or choose another --name"
        )
        return decision
    if not exists:
        return decision
    path, state, notes = newest_checkpoint(run_dir)
    decision.update(resume=True, notes=notes)
    if state is not None:
        decision["checkpoint"] = str(path)
        decision["saved_args"] = state.get("args")
    else:
        with contextlib.suppress(OSError, ValueError):
            decision["saved_args"] = read_run_json(run_dir)["hparams"]
    return decision


def _merge_saved_args(
    args: argparse.Namespace, saved: dict[str, Any], explicit: set[str], dist_info: DistInfo
) -> argparse.Namespace:
    """The saved run's settings, except runtime options given on this command line."""
    merged = argparse.Namespace(**vars(args))
    for key, value in saved.items():
        if key in INVOCATION_OPTIONS or (key in RUNTIME_OPTIONS and key in explicit):
            continue
        current = getattr(args, key, None)
        if key in explicit and current != value:
            _say(dist_info, f"note: --{key.replace('_', '-')} {current} ignored on resume; "
                 f"the run uses {value}")  # fmt: skip
        setattr(merged, key, value)
    return merged


def _write_run_files(
    writer: RunWriter,
    args: argparse.Namespace,
    argv: list[str],
    index: DatasetIndex,
    dist_info: DistInfo,
    device: torch.device,
) -> None:
    writer.write_run_info(
        RunInfo(
            name=args.name,
            engine="pytorch",
            engine_version=torch.__version__.split("+")[0],
            arch=args.arch,
            width=args.width,
            epochs=args.epochs,
            batch_size=args.batch_size,
            data=DataInfo(
                root=str(index.root),
                layout=index.layout,
                num_classes=len(index.classes),
                num_train=len(index.train),
                num_val=len(index.val),
                synthetic=is_synthetic_dataset(index.root),
            ),
            preprocess=Preprocess.for_size(args.image_size, mean=MEAN, std=STD),
            hparams=_jsonable_args(args),
            world_size=dist_info.world_size,
            devices=device_names(device.type),
            command="python -m trainer train " + shlex.join(argv),
            host=socket.gethostname(),
            started=time.time(),
        )
    )
    writer.write_classes(index.classes, index.names)
    writer.write_val_index(index.val)


def _new_bad_images(
    train_bad: list[list[int]] | None,
    val: dict[str, np.ndarray] | None,
    seen: set[int],
    index: DatasetIndex,
) -> list[str]:
    """Paths of unreadable images not reported before (train and val share one count)."""
    new: list[str] = []
    for i in sorted({i for part in train_bad or [] for i in part}):
        key = i  # train indices as they are, val ones offset past them
        if key not in seen:
            seen.add(key)
            new.append(index.train[i][0])
    if val is not None:
        for i in np.flatnonzero(~val["ok"].astype(bool)):
            key = len(index.train) + int(i)
            if key not in seen:
                seen.add(key)
                new.append(index.val[i][0])
    return new


def write_torch(writer: RunWriter, name: str, obj: Any) -> None:
    """A torch.save'd object, written atomically through the run writer."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    writer.write_bytes(name, buf.getvalue())


def _jsonable_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | list)}


def _final_status(writer: RunWriter | NullWriter, epoch: int, **fields: Any) -> bool:
    """Write the last status event; on a full or read-only disk say so on stderr instead."""
    try:
        writer.event("status", epoch, pid=os.getpid(), host=socket.gethostname(), **fields)
    except OSError as e:
        print(f"error: could not write the {fields['state']!r} status to "
              f"{writer.root / METRICS}: {e}", file=sys.stderr)  # fmt: skip
        return False
    return True


def _raise_stop(signum: int, frame) -> None:
    raise StopRequested(signal.Signals(signum).name)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _fail_usage(e: BaseException, code: int = 2) -> int:
    print(f"error: {e}", file=sys.stderr)
    return code


def _say(dist_info: DistInfo, message: str) -> None:
    if dist_info.is_main:
        print(message, flush=True)
