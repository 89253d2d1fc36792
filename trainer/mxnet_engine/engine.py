"""``python -m trainer.mxnet_engine``: train a Gluon ResNet into a run directory.

The seed's way of using several GPUs: one process, a list of contexts, each batch split over
them with ``gluon.utils.split_and_load``, gradients reduced by a ``device`` kvstore. The run
directory is written exactly as the PyTorch engine writes it (``epochscope.writer``), with MXNet
parameters as checkpoints and ``mx.onnx`` models for the dashboard's classifier.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from epochscope.layout import RUN_JSON, check_run_name, epoch_file
from epochscope.lock import RunLockedError
from epochscope.reader import read_run_json
from epochscope.records import DataInfo, Preprocess, RunInfo
from epochscope.writer import RunWriter
from trainer.devices import DeviceMonitor, device_names
from trainer.mxnet_engine import checkpoints as ckpt
from trainer.mxnet_engine.data import (
    MEAN,
    STD,
    BatchLoader,
    DataError,
    DatasetIndex,
    discover,
    make_pipeline,
)
from trainer.mxnet_engine.model import (
    DeviceError,
    build_net,
    contexts,
    lr_scheduler,
    onnx_bytes,
)
from trainer.mxnet_engine.options import (
    RUNTIME_OPTIONS,
    UsageError,
    parse_arch,
    parse_args,
    validate,
)
from trainer.presets import INVOCATION_OPTIONS, is_synthetic_dataset


class StopRequested(BaseException):
    """SIGTERM or SIGINT: leave with status ``stopped``."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = parse_args(argv)
    try:
        validate(args, explicit)
        check_run_name(args.name)
    except ValueError as e:
        return _fail(e)
    run_dir = Path(args.runs_dir).expanduser().resolve() / args.name
    if args.background:
        from trainer import background

        # the detached child comes back through `python -m trainer train --engine mxnet`
        child = argv if "--engine" in argv else ["--engine", "mxnet", *argv]
        return background.launch(child, run_dir)

    writer = RunWriter(run_dir)
    ctx: dict[str, Any] = {"epoch": 1, "started": False, "monitor": None, "loader": None}
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(args, explicit, argv, writer, ctx)
    except (UsageError, DataError, DeviceError, RunLockedError) as e:
        return _fail(e, 3 if isinstance(e, RunLockedError) else 2)
    except StopRequested:
        if ctx["started"]:
            writer.event("status", ctx["epoch"], state="stopped", pid=os.getpid(),
                         host=socket.gethostname())  # fmt: skip
        print(f"stopped during epoch {ctx['epoch']}", flush=True)
        return 0
    except Exception as e:
        if ctx["started"]:
            writer.event("status", ctx["epoch"], state="failed", error=_one_line(e),
                         traceback=traceback.format_exc(), pid=os.getpid(),
                         host=socket.gethostname())  # fmt: skip
        traceback.print_exc()
        print(f"error: training failed: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        if ctx["monitor"] is not None:
            ctx["monitor"].stop()
        if ctx["loader"] is not None:
            ctx["loader"].close()
        writer.remove_pid_if_mine()
        writer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(
    args: argparse.Namespace,
    explicit: set[str],
    argv: list[str],
    writer: RunWriter,
    ctx: dict[str, Any],
) -> int:
    run_dir = writer.root
    index = discover(args.data, args.val_fraction)  # a bad --data fails before RUNS is touched
    writer.acquire()

    meta, notes = _resume_point(args, run_dir)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    resuming = meta is not None
    if meta and meta.get("args"):
        args = _merge_saved_args(args, meta["args"], explicit)
    start_epoch = meta["epoch"] + 1 if meta and "epoch" in meta else 1
    if resuming and start_epoch > args.epochs:
        print(f"run {args.name} has already finished its {args.epochs} epochs "
              "(raise --epochs to train longer); nothing to do")  # fmt: skip
        return 0

    devices = contexts(args.device, args.num_devices)
    if args.batch_size < len(devices):
        raise UsageError(f"--batch-size {args.batch_size} is below the {len(devices)} devices")
    steps_per_epoch = len(index.train) // args.batch_size
    if steps_per_epoch == 0:
        raise DataError(
            f"{len(index.train)} training images make less than one batch of "
            f"{args.batch_size}; lower --batch-size"
        )

    # model, optimizer, schedule; then the checkpoint's weights and optimizer state
    version, depth = parse_arch(args.arch)
    num_classes = len(index.classes)
    mx.random.seed(args.seed)
    net = build_net(version, depth, num_classes, args.width)
    net.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=devices)
    checkpoint_epoch = meta.get("epoch") if meta else None
    folder = run_dir / "checkpoints"
    if checkpoint_epoch:
        net.load_parameters(str(folder / epoch_file(checkpoint_epoch, ".params")), ctx=devices)
    net.hybridize(static_alloc=True)
    schedule = lr_scheduler(
        args.lr_schedule, lr=args.lr, steps_per_epoch=steps_per_epoch, epochs=args.epochs,
        factor=args.lr_factor, milestones=args.lr_steps, gamma=args.lr_gamma,
        warmup_epochs=args.warmup_epochs, min_factor=args.min_lr_factor,
    )  # fmt: skip
    trainer = gluon.Trainer(
        net.collect_params(),
        "sgd",
        {"learning_rate": args.lr, "momentum": args.momentum, "wd": args.weight_decay,
         "lr_scheduler": schedule},
        kvstore="device",  # the seed's: gradients reduced across the GPUs, one update
    )  # fmt: skip
    if checkpoint_epoch:
        trainer.load_states(str(folder / epoch_file(checkpoint_epoch, ".states")))
    best = dict(meta.get("best") or {}) if meta else {}
    best = {"epoch": best.get("epoch"), "val_top5": best.get("val_top5", -1.0)}
    bad_images: set[int] = set(meta.get("bad_images", [])) if meta else set()

    loader = ctx["loader"] = BatchLoader(index, args.workers)
    train_pipe = make_pipeline(args.image_size, train=True, min_scale=args.min_crop_scale)
    val_pipe = make_pipeline(args.image_size, train=False)
    norm = Normalizer(devices)

    _write_run_files(writer, args, argv, index, devices)
    ctx.update(epoch=start_epoch, started=True)
    host = socket.gethostname()
    if resuming:
        writer.event("status", start_epoch, state="resumed", from_epoch=start_epoch - 1,
                     pid=os.getpid(), host=host)  # fmt: skip
    else:
        writer.event("status", start_epoch, state="started", pid=os.getpid(), host=host)
    kind = "cuda" if devices[0].device_type == "gpu" else "cpu"
    monitor = ctx["monitor"] = DeviceMonitor(writer.event, kind, args.device_interval)
    monitor.epoch = start_epoch
    monitor.start()
    print(
        f"run {args.name} (mxnet {mx.__version__}): {args.arch} width {args.width} on "
        f"{len(devices)} x {kind}, {num_classes} classes, {len(index.train)} train / "
        f"{len(index.val)} val images ({index.layout}), {args.image_size} px, "
        f"epochs {start_epoch}..{args.epochs}; writing {run_dir}",
        flush=True,
    )

    val_labels = np.array([label for _, label in index.val], dtype=np.int64)
    for epoch in range(start_epoch, args.epochs + 1):
        ctx["epoch"] = monitor.epoch = epoch
        mx.random.seed(args.seed * 1000 + epoch)
        batches = loader.batches(
            "train", args.batch_size, train_pipe, args.seed * 100_003 + epoch, shuffle=True
        )
        step0 = (epoch - 1) * steps_per_epoch

        def on_step(fields: dict[str, Any], epoch: int = epoch, step0: int = step0) -> None:
            writer.event("step", epoch, step=step0 + fields["epoch_step"], **fields)

        stats = train_one_epoch(
            net, trainer, norm, batches, steps=steps_per_epoch,
            label_smoothing=args.label_smoothing, log_interval=args.log_interval, on_step=on_step,
        )  # fmt: skip
        sync_batchnorm_stats(net, devices)
        val_start = time.perf_counter()
        val = evaluate(net, norm, loader.batches("val", 2 * args.batch_size, val_pipe, 0, False),
                       len(index.val))  # fmt: skip
        val_seconds = time.perf_counter() - val_start

        new_bad = _new_bad_images(stats["bad"], val["ok"], bad_images, index)
        if new_bad:
            message = f"skipped {len(new_bad)} unreadable image(s): " + ", ".join(new_bad[:5])
            message += " ..." if len(new_bad) > 5 else ""
            writer.event("warning", epoch, message=message, count=len(new_bad))
            print(f"warning: {message} ({len(bad_images)} so far)", file=sys.stderr)
        top5 = val["top5"].astype(np.int16)
        val_top1 = float(np.mean(top5[:, 0] == val_labels))
        val_top5 = float(np.mean((top5 == val_labels[:, None]).any(axis=1)))
        writer.write_npz(f"predictions/{epoch_file(epoch, '.npz')}", top5=top5,
                         prob=val["prob"].astype(np.float16))  # fmt: skip
        writer.write_bytes(f"models/{epoch_file(epoch, '.onnx')}",
                           onnx_bytes(net, args.image_size, num_classes))  # fmt: skip
        if val_top5 > best["val_top5"]:
            best = {"epoch": epoch, "val_top5": val_top5}
        count = max(stats["count"], 1)
        record = writer.event(
            "epoch", epoch,
            train_loss=stats["loss_sum"] / count, train_top1=stats["top1_sum"] / count,
            train_top5=stats["top5_sum"] / count, val_loss=float(np.mean(val["loss"])),
            val_top1=val_top1, val_top5=val_top5, epoch_seconds=stats["seconds"] + val_seconds,
            img_per_s=stats["images"] / max(stats["seconds"], 1e-9),
            val_img_per_s=len(index.val) / max(val_seconds, 1e-9),
            lr=trainer.learning_rate, skipped_images=len(bad_images),
        )  # fmt: skip
        ckpt.save_checkpoint(
            folder, epoch, net, trainer,
            {"engine": "mxnet", "args": _jsonable_args(args), "best": best,
             "bad_images": sorted(bad_images)},
        )  # fmt: skip
        ckpt.prune(folder, args.keep_checkpoints)
        if args.keep_models:
            ckpt.prune_models(run_dir / "models", args.keep_models, best["epoch"])
        print(
            f"epoch {epoch}/{args.epochs}: train loss {record['train_loss']:.3f} "
            f"top-5 {record['train_top5']:.3f} | val loss {record['val_loss']:.3f} "
            f"top-1 {val_top1:.3f} top-5 {val_top5:.3f} | {record['epoch_seconds']:.1f} s, "
            f"{record['img_per_s']:.0f} img/s train, {record['val_img_per_s']:.0f} img/s val",
            flush=True,
        )

    writer.event("status", args.epochs, state="finished", pid=os.getpid(), host=host)
    ctx["started"] = False
    print(f"finished {args.name}: {run_dir}", flush=True)
    return 0


# --- one epoch of training, one evaluation ------------------------------------------------------
class Normalizer:
    """uint8 NCHW numpy -> normalised float32 on each context (the batch split the seed's way)."""

    def __init__(self, devices: list[mx.Context]) -> None:
        self.devices = devices
        mean = np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1) * 255
        std = np.asarray(STD, np.float32).reshape(1, 3, 1, 1) * 255
        self.mean = [nd.array(mean, ctx=c) for c in devices]
        self.std = [nd.array(std, ctx=c) for c in devices]

    def split(self, *arrays: np.ndarray) -> list[list[nd.NDArray]]:
        return [gluon.utils.split_and_load(a, self.devices, even_split=False) for a in arrays]

    def __call__(self, parts: list[nd.NDArray]) -> list[nd.NDArray]:
        pairs = zip(parts, self.mean, self.std, strict=True)
        return [(x.astype("float32") - m) / s for x, m, s in pairs]


def sync_batchnorm_stats(net, devices: list[mx.Context]) -> None:
    """Average BatchNorm's running statistics over the contexts. Each device updates its own
    from its share of the batches; without this, an image's prediction would depend on which
    device evaluated it, and the checkpoint and ONNX model (the average) on neither."""
    if len(devices) < 2:
        return
    for param in net.collect_params().values():
        if param.grad_req == "null":
            copies = [d.as_in_context(mx.cpu()) for d in param.list_data()]
            param.set_data(nd.add_n(*copies) / len(copies))


def _per_image_loss(logits: nd.NDArray, y: nd.NDArray, smoothing: float) -> nd.NDArray:
    logp = nd.log_softmax(logits, axis=1)
    nll = -nd.pick(logp, y, axis=1)
    if smoothing == 0:
        return nll
    # the same label smoothing as torch's cross_entropy: eps spread over all classes
    return (1 - smoothing) * nll - smoothing * logp.mean(axis=1)


def _hits(logits: nd.NDArray, y: nd.NDArray) -> tuple[nd.NDArray, nd.NDArray]:
    k = min(5, logits.shape[1])
    top = nd.topk(logits, axis=1, k=k, ret_typ="indices")
    match = top == y.astype("float32").reshape((-1, 1))
    return match[:, 0], match.max(axis=1)


def train_one_epoch(
    net,
    trainer: gluon.Trainer,
    norm: Normalizer,
    batches,
    *,
    steps: int,
    label_smoothing: float,
    log_interval: int,
    on_step,
) -> dict[str, Any]:
    """One pass; counts stay on the devices between log points (one sync per window)."""
    sums = np.zeros(4)  # loss, top1, top5, images
    window: list[nd.NDArray] = []
    bad: list[int] = []
    start = window_start = time.perf_counter()
    window_images = 0
    images_seen = 0
    for i, (images, labels, rows, ok) in enumerate(batches, 1):
        if not ok.all():
            bad += rows[~ok].tolist()
        xs, ys, ks = norm.split(images, labels, ok.astype(np.float32))
        with autograd.record():
            outs = [net(x) for x in norm(xs)]
            losses = [
                _per_image_loss(o, y, label_smoothing) * k
                for o, y, k in zip(outs, ys, ks, strict=True)
            ]
        autograd.backward(losses)
        # unreadable images weigh nothing: the gradient is the mean over the readable ones
        trainer.step(max(int(ok.sum()), 1))
        for o, y, k, loss in zip(outs, ys, ks, losses, strict=True):
            h1, h5 = _hits(o.detach(), y)
            part = nd.stack(loss.sum(), (h1 * k).sum(), (h5 * k).sum(), k.sum()).reshape((4,))
            window.append(part.as_in_context(mx.cpu()))
        window_images += len(labels)
        images_seen += len(labels)
        if i % log_interval == 0 or i == steps:
            counts = sum(w.asnumpy().astype(np.float64) for w in window)  # the window's sync
            sums += counts
            now = time.perf_counter()
            on_step(
                {
                    "epoch_step": i,
                    "steps_per_epoch": steps,
                    "loss": counts[0] / max(counts[3], 1),
                    "lr": trainer.learning_rate,
                    "img_per_s": window_images / max(now - window_start, 1e-9),
                    "top1": sums[1] / max(sums[3], 1),
                    "top5": sums[2] / max(sums[3], 1),
                }
            )
            window, window_images, window_start = [], 0, now
    nd.waitall()
    return {
        "loss_sum": float(sums[0]),
        "top1_sum": float(sums[1]),
        "top5_sum": float(sums[2]),
        "count": float(sums[3]),
        "images": images_seen,
        "seconds": time.perf_counter() - start,
        "bad": bad,
    }


def evaluate(net, norm: Normalizer, batches, n: int) -> dict[str, np.ndarray]:
    """Top-5 classes and probabilities, loss and readability of every validation image, in
    val_index order."""
    top5 = np.full((n, 5), -1, np.int64)
    prob = np.zeros((n, 5), np.float32)
    loss = np.zeros(n, np.float32)
    ok_all = np.ones(n, bool)
    for images, labels, rows, ok in batches:
        (xs,) = norm.split(images)
        outs = [net(x) for x in norm(xs)]
        logits = nd.concat(*[o.as_in_context(mx.cpu()) for o in outs], dim=0)
        y = nd.array(labels, ctx=mx.cpu())
        k = min(5, logits.shape[1])
        p, top = nd.topk(nd.softmax(logits, axis=1), axis=1, k=k, ret_typ="both")
        top5[rows, :k] = top.asnumpy().astype(np.int64)
        prob[rows, :k] = p.asnumpy()
        loss[rows] = _per_image_loss(logits, y, 0.0).asnumpy()
        ok_all[rows] = ok
    return {"top5": top5, "prob": prob, "loss": loss, "ok": ok_all}


# --- resume -------------------------------------------------------------------------------------
def _resume_point(args: argparse.Namespace, run_dir: Path) -> tuple[dict | None, list[str]]:
    """None to start; else the newest loadable checkpoint's metadata (``{}`` when the run has
    none yet, with the settings from run.json)."""
    exists = (run_dir / RUN_JSON).exists()
    if args.resume and not exists:
        raise UsageError(f"no run {args.name!r} in {run_dir.parent} to resume")
    if exists and not (args.resume or args.resume_or_start):
        raise UsageError(
            f"run {args.name!r} already exists in {run_dir.parent}; pass --resume to continue "
            "it, or choose another --name"
        )
    if not exists:
        return None, []
    info = read_run_json(run_dir)
    if info.get("engine") != "mxnet":
        raise UsageError(
            f"run {args.name!r} was trained by the {info.get('engine')} engine; resume it "
            f"with --engine {info.get('engine')}"
        )
    notes = []
    folder = run_dir / "checkpoints"
    for epoch in ckpt.checkpoint_epochs(folder):
        try:
            return ckpt.read_meta(folder, epoch), notes
        except (OSError, ValueError) as e:
            notes.append(f"checkpoint epoch {epoch} does not load ({type(e).__name__}); skipped")
    return {"args": info.get("hparams")}, notes


def _merge_saved_args(
    args: argparse.Namespace, saved: dict[str, Any], explicit: set[str]
) -> argparse.Namespace:
    merged = argparse.Namespace(**vars(args))
    for key, value in saved.items():
        if key in INVOCATION_OPTIONS or (key in RUNTIME_OPTIONS and key in explicit):
            continue
        if key in explicit and getattr(args, key, None) != value:
            print(f"note: --{key.replace('_', '-')} {getattr(args, key)} ignored on resume; "
                  f"the run uses {value}")  # fmt: skip
        setattr(merged, key, value)
    return merged


# --- the run directory's fixed files ------------------------------------------------------------
def _write_run_files(
    writer: RunWriter,
    args: argparse.Namespace,
    argv: list[str],
    index: DatasetIndex,
    devices: list[mx.Context],
) -> None:
    writer.write_run_info(
        RunInfo(
            name=args.name,
            engine="mxnet",
            engine_version=mx.__version__,
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
            world_size=len(devices),
            devices=_device_list(devices),
            command="python -m trainer train " + shlex.join(argv),
            host=socket.gethostname(),
            started=time.time(),
        )
    )
    writer.write_classes(index.classes, index.names)
    writer.write_val_index(index.val)


def _device_list(devices: list[mx.Context]) -> list[dict[str, Any]]:
    if devices[0].device_type != "gpu":
        cpu = device_names("cpu")[0]
        return [{**cpu, "index": i} for i in range(len(devices))]
    return [{"index": c.device_id, "kind": "cuda", "name": f"gpu {c.device_id}"} for c in devices]


def _new_bad_images(
    train_bad: list[int], val_ok: np.ndarray, seen: set[int], index: DatasetIndex
) -> list[str]:
    new = []
    for i in sorted(set(train_bad)):
        if i not in seen:
            seen.add(i)
            new.append(index.train[i][0])
    for i in np.flatnonzero(~val_ok):
        key = len(index.train) + int(i)
        if key not in seen:
            seen.add(key)
            new.append(index.val[i][0])
    return new


def _jsonable_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | list)}


def _raise_stop(signum: int, frame) -> None:
    raise StopRequested(signal.Signals(signum).name)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _fail(e: BaseException, code: int = 2) -> int:
    print(f"error: {e}", file=sys.stderr)
    return code
