"""``python -m trainer train``: train a ResNet on an image-folder dataset into a run directory.

Reads top to bottom like torchvision's classification reference: ``train_one_epoch``,
``evaluate``, then ``main``: arguments, distributed set-up, and ``train``: data, model, optimizer
and schedule, resume, the epoch loop. The run directory's policy (lock, resume decision, status
events, each epoch's files in order, rank 0 only) is :class:`trainer.session.RunSession`'s, shared
with the MXNet engine; the command line is :mod:`trainer.options`'.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from epochscope.export import onnx_bytes
from epochscope.gather import gather_to_rank0
from epochscope.layout import CHECKPOINTS, epoch_file
from epochscope.predictions import LABEL_ARRAYS, label_stats, pad5
from epochscope.training_stats import TrainStatsCollector, dense, gather_rows
from epochscope.writer import RunWriter
from trainer import background, cluster, fastdata, label_edits, recipe
from trainer.data import DataError, Normalize, cpu_threads
from trainer.devices import device_names
from trainer.distributed import (
    DistInfo,
    all_reduce_sum,
    broadcast_object,
    gather_predictions,
    init_distributed,
    shutdown,
)
from trainer.embedding import embed_on
from trainer.models import create_model, list_models
from trainer.options import UsageError, parse_args, validate
from trainer.schedules import Schedule, build_scheduler
from trainer.session import EXIT_USAGE, RunSession, TrainTotals, run_dir_of

CHECKPOINT_SUFFIX = ".pt"


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
    stats: TrainStatsCollector | None = None,
) -> dict[str, Any]:
    """Train for one pass over ``loader``; return the epoch's summed counts (this rank) and
    the indices of images that could not be read. ``stats``: collects each image's training
    statistics from the step's own logits (no extra pass, no host sync)."""
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
            top = logits.detach().float().topk(min(5, logits.shape[1]), dim=1)
            if stats is not None:  # the loss and the top-5 give them: no more passes
                nll = per_image if not label_smoothing else None
                stats.add(indices, logits, y, keep=ok, nll=nll, top=top)
            hit1, hit5 = _hits(top.indices, y)
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
    model: nn.Module,
    loader: DataLoader,
    normalize: Normalize,
    *,
    amp: bool,
    progress: bool,
    reduce: Callable[[list[float]], list[float]] | None = None,
    features: bool = False,
) -> dict[str, np.ndarray]:
    """This rank's share of the validation predictions: per image its index, top-5 classes and
    probabilities, loss, whether the file could be read, and what
    :func:`epochscope.predictions.label_stats` computes from the full logits (``reduce`` sums
    over the ranks for the temperature, which comes back as ``temperature``). ``features``:
    also the penultimate features (float16 [N, F], ``features``) of models that expose them."""
    model.eval()
    device = normalize.device
    keys = ("index", "top5", "prob", "loss", "ok", "logits", "y", "features")
    out: dict[str, list] = {k: [] for k in keys}
    features = features and has_features(model)
    bar = _progress_bar(len(loader), "validate", progress)
    for images, labels, indices, ok in loader:
        x = normalize(images)
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            if features:
                pooled = torch.flatten(model.pool(model.forward_features(x)), 1)
                logits = model.fc(pooled)
                out["features"].append(pooled.half())  # on the device, half the bytes
            else:
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
        out["logits"].append(logits)
        out["y"].append(labels.numpy())
        bar.update(1)
    bar.close()
    if not out["index"]:
        stats = label_stats(np.zeros((0, 1), np.float32), np.zeros(0, np.int64), reduce=reduce)
        return {**{k: np.zeros(0) for k in ("index", "top5", "prob", "loss", "ok")}, **stats}
    on_device = {k: torch.cat(out[k]).cpu().numpy() for k in ("top5", "prob", "loss", "logits")}
    if out["features"]:
        on_device["features"] = torch.cat(out["features"]).cpu().numpy()
    return {
        **({"features": on_device["features"]} if "features" in on_device else {}),
        "index": np.concatenate(out["index"]),
        "top5": pad5(on_device["top5"], -1),
        "prob": pad5(on_device["prob"], 0.0),
        "loss": on_device["loss"],
        "ok": np.concatenate(out["ok"]),
        **label_stats(on_device["logits"], np.concatenate(out["y"]), reduce=reduce),
    }


def has_features(model: nn.Module) -> bool:
    """Whether ``model`` is ``fc(flatten(pool(forward_features(x))))``, as the trainer's ResNets:
    its pooled features are what the epoch's embeddings store."""
    fc = getattr(model, "fc", None)
    return (
        hasattr(model, "forward_features") and hasattr(model, "pool") and isinstance(fc, nn.Linear)
    )


def _hits(top: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 and top-5 hits of the top-k class indices ``top`` ``[n, k]``."""
    match = top == y[:, None]
    return match[:, 0].float(), match.any(dim=1).float()


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


# --- checkpoints: one torch.save'd dict, loaded with weights_only=True (no pickle) -------------
def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_checkpoint(
    writer: RunWriter, epoch: int, meta: dict[str, Any], *, model: nn.Module, optimizer, scheduler
) -> None:
    state = {**meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state()}  # fmt: skip
    buf = io.BytesIO()
    torch.save(state, buf)
    writer.write_bytes(f"{CHECKPOINTS}/{epoch_file(epoch, CHECKPOINT_SUFFIX)}", buf.getvalue())


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


# --- the command --------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    # arguments
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = parse_args(argv, "pytorch", list_models())
    try:
        validate(args, explicit, "pytorch", list_models())
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.background:
        return background.launch(argv, run_dir_of(args))

    # distributed set-up: rank 0 owns the run directory, the others write nothing
    dist_info = init_distributed(args.device)
    session = RunSession(args, explicit, argv, engine="pytorch", rank=dist_info.rank,
                         broadcast=broadcast_object)  # fmt: skip
    session.on_close(shutdown)
    return session.run(lambda: train(session, dist_info))


def train(session: RunSession, dist_info: DistInfo) -> None:
    args, device, world = session.args, dist_info.device, dist_info.world_size
    cuda = device.type == "cuda"
    cluster.warn_if_alone(world, os.environ, session.say)

    # the data's index first (image folders or a prepared store): a bad --data fails before
    # anything is created in RUNS
    index = fastdata.discover_any(args.data, args.val_fraction)
    given = (getattr(args, "exclude", None), getattr(args, "relabel", None))
    early = label_edits.apply(index, *given)  # a bad edit file fails before RUNS is touched
    # one trainer per run directory; start or resume (the run's saved settings from here on)
    checkpoint = session.open((CHECKPOINT_SUFFIX,), load_checkpoint)
    args = session.args
    saved = (getattr(args, "exclude", None), getattr(args, "relabel", None))
    index, edits = early if saved == given else label_edits.apply(index, *saved)  # read once
    share = getattr(args, "threshold_samples", None)
    trained, edits = label_edits.threshold_samples(index, edits, share, args.seed)
    loader_plan = fastdata.plan_for(trained, args)
    if not cuda and "OMP_NUM_THREADS" not in os.environ:  # an explicit setting wins
        # the in-memory cache needs no loader workers: every core trains
        torch.set_num_threads(cpu_threads(0 if loader_plan.in_memory else args.workers))
    if checkpoint is None:
        torch.manual_seed(args.seed)
        random.seed(args.seed)

    # data
    if args.batch_size < world:
        raise UsageError(f"--batch-size {args.batch_size} is smaller than the {world} processes")
    batch = args.batch_size // world
    loaders = fastdata.build_loaders(
        trained, args, world=world, rank=dist_info.rank, batch=batch, pin_memory=cuda,
        chosen=loader_plan, progress=session.interactive, device=device,
    )  # fmt: skip
    loader_plan = loaders.plan  # e.g. "jpeg+nvjpeg" when the GPU decodes
    session.say(f"data: {loader_plan.loader} loader ({loader_plan.reason}); "
                + recipe.describe(args))  # fmt: skip
    train_loader, val_loader, train_sampler = loaders.train, loaders.val, loaders.train_sampler
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise DataError(
            f"{len(index.train)} training images make less than one batch of "
            f"{args.batch_size}; lower --batch-size"
        )

    # model
    channels_last = args.channels_last  # faster on CPU too (oneDNN): 1.8x at 2 threads
    amp = cuda and args.amp
    model = create_model(
        args.arch, num_classes=len(index.classes), width=args.width, stem=args.stem
    )
    if edits.threshold:  # before a checkpoint's weights load: they include its head
        if not hasattr(model, "add_threshold_class"):
            raise UsageError(f"--threshold-samples needs a ResNet; {args.arch} has no such head")
        model.add_threshold_class()
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    normalize = Normalize(device, channels_last)

    # optimizer and schedule
    optimizer = torch.optim.SGD(
        recipe.param_groups(model, args.weight_decay, args.norm_decay), lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov,
    )  # fmt: skip
    schedule = Schedule(
        name=args.lr_schedule, epochs=args.epochs, factor=args.lr_factor,
        milestones=tuple(args.lr_steps), gamma=args.lr_gamma,
        warmup_epochs=args.warmup_epochs, min_factor=args.min_lr_factor,
    )  # fmt: skip
    scheduler = build_scheduler(optimizer, schedule, steps_per_epoch)

    # resume
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"])
    train_model: nn.Module = model  # checkpoints and evaluation use the unwrapped model
    if dist_info.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )
    if args.compile and cuda:
        train_model = torch.compile(train_model)

    # the epoch loop
    session.begin(index, engine_version=torch.__version__.split("+")[0], world_size=world,
                  devices=device_names(device.type), device_kind=device.type,
                  loader=loader_plan.loader, edits=edits)  # fmt: skip
    save = functools.partial(save_checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
    # the statistics are of the logits trained on: with threshold samples, one class more
    trained_classes = len(index.classes) + (1 if edits.threshold else 0)
    collector = TrainStatsCollector(len(index.train), trained_classes) if args.train_stats else None
    for epoch in session.epochs():
        train_sampler.set_epoch(epoch)
        stats = train_one_epoch(
            train_model, train_loader, normalize, optimizer, scheduler,
            epoch=epoch, label_smoothing=args.label_smoothing, amp=amp, world_size=world,
            log_interval=args.log_interval, on_step=functools.partial(session.log_step, epoch),
            progress=session.interactive, stats=collector,
        )  # fmt: skip
        train_stats = None
        if collector is not None:  # every rank's rows, spread over the training set on rank 0
            rows = gather_rows(collector.rows(), gather_to_rank0)
            train_stats = rows and dense(rows, len(index.train), trained_classes)
        sums = [stats["loss_sum"], stats["top1_sum"], stats["top5_sum"], stats["count"]]
        loss_sum, top1, top5, count = all_reduce_sum(sums, device)
        train_bad = gather_to_rank0(stats["bad"]) or []  # every rank's, on rank 0

        val_start = time.perf_counter()
        # the unwrapped model: identical weights on every rank, no collectives needed
        local = evaluate(
            model, val_loader, normalize, amp=amp, progress=session.interactive,
            reduce=lambda sums: all_reduce_sum(sums, device),
            features=getattr(args, "embeddings", True),
        )  # fmt: skip
        extra = {k: local[k] for k in (*LABEL_ARRAYS, "features") if k in local}
        val = gather_predictions(
            local["index"], len(index.val), top5=local["top5"], prob=local["prob"],
            loss=local["loss"], ok=local["ok"], **extra,
        )  # fmt: skip
        if val is not None:  # the same on every rank
            val["temperature"] = local["temperature"]
            if cuda and val.get("features") is not None:  # the PCA on the GPU: milliseconds
                val["embeddings"] = embed_on(val.pop("features"), device)
        totals = TrainTotals(
            loss_sum, top1, top5, count, images=stats["images"] * world,
            seconds=stats["seconds"], bad=[i for part in train_bad for i in part],
        )  # fmt: skip
        session.record_epoch(
            epoch, totals, val, val_seconds=time.perf_counter() - val_start,
            lr=optimizer.param_groups[0]["lr"], onnx=lambda: onnx_bytes(model, args.image_size),
            save=save, train_stats=train_stats,
        )  # fmt: skip
