"""``python -m trainer.mxnet_engine``: train a Gluon ResNet into a run directory.

The seed's way of using several GPUs: one process, a list of contexts, each batch split over
them with ``gluon.utils.split_and_load``, gradients reduced by a ``device`` kvstore. What lands
in the run directory, and when, is :class:`trainer.session.RunSession`'s (shared with the
PyTorch engine); this module only builds, trains, evaluates, and hands over checkpoints
(:mod:`trainer.mxnet_engine.checkpoints`), ``mx.onnx`` models and the validation images'
pooled features (the session stores them as the epoch's embeddings).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from epochscope.predictions import label_stats
from epochscope.training_stats import TrainStatsCollector, dense
from trainer import background, label_edits
from trainer.devices import device_names
from trainer.mxnet_engine import checkpoints as ckpt
from trainer.mxnet_engine.data import (
    MEAN,
    STD,
    BatchLoader,
    DataError,
    discover,
    kept_rows,
    make_pipeline,
)
from trainer.mxnet_engine.model import (
    DeviceError,
    build_net,
    contexts,
    feature_net,
    lr_scheduler,
    onnx_bytes,
)
from trainer.options import GLUON_ARCHS, UsageError, parse_args, validate
from trainer.session import EXIT_USAGE, RunSession, TrainTotals, run_dir_of


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = parse_args(argv, "mxnet", GLUON_ARCHS)
    try:
        validate(args, explicit, "mxnet", GLUON_ARCHS)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.background:
        # the detached child comes back through `python -m trainer train --engine mxnet`
        child = argv if "--engine" in argv else ["--engine", "mxnet", *argv]
        return background.launch(child, run_dir_of(args))
    session = RunSession(args, explicit, argv, engine="mxnet", usage_errors=(DeviceError,))
    return session.run(lambda: train(session))


def train(session: RunSession) -> None:
    index = discover(session.args.data, session.args.val_fraction)  # before RUNS is touched
    given = (session.args.exclude, session.args.relabel)
    early = label_edits.apply(index, *given)  # a bad edit file fails before RUNS is touched
    state = session.open(ckpt.SUFFIXES, ckpt.load)
    args = session.args
    saved = (args.exclude, args.relabel)
    index, edits = early if saved == given else label_edits.apply(index, *saved)  # read once
    devices = contexts(args.device, args.num_devices)
    if args.batch_size < len(devices):
        raise UsageError(f"--batch-size {args.batch_size} is below the {len(devices)} devices")
    kept = len(kept_rows(index))
    steps_per_epoch = kept // args.batch_size
    if steps_per_epoch == 0:
        raise DataError(
            f"{kept} training images make less than one batch of "
            f"{args.batch_size}; lower --batch-size"
        )

    # model, optimizer, schedule; then the checkpoint's weights and optimizer state
    depth, version = (int(v) for v in args.arch.removeprefix("resnet").split("_v"))
    num_classes = len(index.classes)
    mx.random.seed(args.seed)
    net = build_net(version, depth, num_classes, args.width)
    net.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=devices)
    if state:
        net.load_parameters(state["params_file"], ctx=devices)
    net.hybridize(static_alloc=True)
    # evaluation's (logits, pooled features), the same weights: the epoch's embeddings
    embedder = feature_net(net) if getattr(args, "embeddings", True) else None
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
    if state:
        ckpt.restore_optimizer(trainer, state["states"])

    loader = BatchLoader(index, args.workers)
    session.on_close(loader.close)
    train_pipe = make_pipeline(args.image_size, train=True, min_scale=args.min_crop_scale)
    val_pipe = make_pipeline(args.image_size, train=False)
    norm = Normalizer(devices)
    gpu = devices[0].device_type == "gpu"
    session.begin(index, engine_version=mx.__version__, world_size=len(devices),
                  devices=_device_list(devices), device_kind="cuda" if gpu else "cpu",
                  edits=edits)  # fmt: skip
    save = functools.partial(ckpt.save, net=net, trainer=trainer)
    collector = TrainStatsCollector(len(index.train), num_classes) if args.train_stats else None
    for epoch in session.epochs():
        mx.random.seed(args.seed * 1000 + epoch)
        batches = loader.batches(
            "train", args.batch_size, train_pipe, args.seed * 100_003 + epoch, shuffle=True
        )
        totals = train_one_epoch(
            net, trainer, norm, batches, steps=steps_per_epoch,
            label_smoothing=args.label_smoothing, log_interval=args.log_interval,
            on_step=functools.partial(session.log_step, epoch), stats=collector,
        )  # fmt: skip
        train_stats = None
        if collector is not None:  # one process holds every device's rows
            train_stats = dense(collector.rows(), len(index.train), num_classes)
        sync_batchnorm_stats(net, devices)
        val_start = time.perf_counter()
        val_batches = loader.batches("val", 2 * args.batch_size, val_pipe, 0, False)
        val = evaluate(net, norm, val_batches, len(index.val), embedder)
        session.record_epoch(
            epoch, totals, val, val_seconds=time.perf_counter() - val_start,
            lr=trainer.learning_rate, onnx=lambda: onnx_bytes(net, args.image_size, num_classes),
            save=save, train_stats=train_stats,
        )  # fmt: skip


def _device_list(devices: list[mx.Context]) -> list[dict[str, Any]]:
    if devices[0].device_type != "gpu":
        cpu = device_names("cpu")[0]
        return [{**cpu, "index": i} for i in range(len(devices))]
    return [{"index": c.device_id, "kind": "cuda", "name": f"gpu {c.device_id}"} for c in devices]


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
            copies = param.list_data()
            mean = nd.add_n(*[d.as_in_context(mx.cpu()) for d in copies]) / len(copies)
            # in place: Parameter.set_data would reset the Trainer's kvstore, and with it the
            # optimizer's momentum, at every epoch
            for d in copies:
                d[:] = mean.as_in_context(d.context)


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


def _batch_stats(logits: nd.NDArray, y: nd.NDArray) -> tuple[nd.NDArray, ...]:
    """(p_label, margin, other) of one device's share, as
    :func:`epochscope.training_stats.batch_stats` computes them, on that device."""
    z = logits.detach().astype("float32")
    given = nd.pick(z, y, axis=1)
    p_label = nd.pick(nd.softmax(z, axis=1), y, axis=1)
    mine = nd.one_hot(y, z.shape[1]) > 0
    others = nd.where(mine, nd.ones_like(z) * -np.inf, z)
    return p_label, given - others.max(axis=1), others.argmax(axis=1)


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
    stats: TrainStatsCollector | None = None,
) -> TrainTotals:
    """One pass; counts stay on the devices between log points (one sync per window).
    ``stats``: collects each image's training statistics from the step's own logits."""
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
        if stats is not None:  # split_and_load cuts the batch in order: rows likewise
            cuts = np.cumsum([o.shape[0] for o in outs])[:-1]
            for o, y, part, keep in zip(outs, ys, np.split(rows, cuts), np.split(ok, cuts),
                                        strict=True):  # fmt: skip
                cpu = [a.as_in_context(mx.cpu()) for a in _batch_stats(o, y)]
                stats.add_computed(part, *cpu, keep=keep)
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
    loss_sum, top1_sum, top5_sum, count = (float(v) for v in sums)
    seconds = time.perf_counter() - start
    return TrainTotals(loss_sum, top1_sum, top5_sum, count, images_seen, seconds, bad)


def evaluate(net, norm: Normalizer, batches, n: int, embedder=None) -> dict[str, np.ndarray]:
    """Top-5 classes and probabilities, loss and readability of every validation image, in
    val_index order, and the label arrays and temperature of
    :func:`epochscope.predictions.label_stats` from the full logits. With ``embedder`` (a
    :func:`trainer.mxnet_engine.model.feature_net` of ``net``) also ``features``: each image's
    pooled features, float16 [n, F], which the session stores as the epoch's embeddings."""
    top5 = np.full((n, 5), -1, np.int64)
    prob = np.zeros((n, 5), np.float32)
    loss = np.zeros(n, np.float32)
    ok_all = np.ones(n, bool)
    all_logits: np.ndarray | None = None
    all_features: np.ndarray | None = None
    all_labels = np.zeros(n, np.int64)
    for images, labels, rows, ok in batches:
        (xs,) = norm.split(images)
        if embedder is None:
            outs = [net(x) for x in norm(xs)]
        else:
            pairs = [embedder(x) for x in norm(xs)]
            outs = [o for o, _ in pairs]
            # the devices' shares in batch order, as the logits; half the bytes to the host
            shares = [f.astype("float16").as_in_context(mx.cpu()) for _, f in pairs]
            features = nd.concat(*shares, dim=0).asnumpy()
            if all_features is None:
                all_features = np.zeros((n, features.shape[1]), np.float16)
            all_features[rows] = features
        logits = nd.concat(*[o.as_in_context(mx.cpu()) for o in outs], dim=0)
        y = nd.array(labels, ctx=mx.cpu())
        k = min(5, logits.shape[1])
        p, top = nd.topk(nd.softmax(logits, axis=1), axis=1, k=k, ret_typ="both")
        top5[rows, :k] = top.asnumpy().astype(np.int64)
        prob[rows, :k] = p.asnumpy()
        loss[rows] = _per_image_loss(logits, y, 0.0).asnumpy()
        ok_all[rows] = ok
        if all_logits is None:
            all_logits = np.zeros((n, logits.shape[1]), np.float32)
        all_logits[rows] = logits.asnumpy()
        all_labels[rows] = labels
    if all_logits is None:
        all_logits = np.zeros((n, 1), np.float32)
    stats = label_stats(all_logits, all_labels)
    out = {"top5": top5, "prob": prob, "loss": loss, "ok": ok_all, **stats}
    return out if all_features is None else {**out, "features": all_features}
