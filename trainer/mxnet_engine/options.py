"""The MXNet engine's command line: the PyTorch engine's options (``trainer/train.py``), with a
one-line refusal for those MXNet cannot honour. No MXNet import: the tests use it directly."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

# Gluon's model zoo: ResNet v1 and v2 at these depths (no 200 or 269)
from trainer.presets import DEMO_PRESET

GLUON_DEPTHS = (18, 34, 50, 101, 152)
ARCHS = tuple(f"resnet{d}_v{v}" for v in (2, 1) for d in GLUON_DEPTHS)
SCHEDULES = ("step", "factor", "cosine", "constant")

# options a resumed run takes from this command line when given; the rest come from the run
RUNTIME_OPTIONS = frozenset(
    {"workers", "device", "num_devices", "log_interval", "device_interval", "keep_checkpoints",
     "keep_models", "epochs"}
)  # fmt: skip


class UsageError(ValueError):
    """A problem with the command line or the run directory, told in one line."""


def get_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer train --engine mxnet",
        description="Train a Gluon ResNet with MXNet 1.9.1 (the seed's framework) into RUNS/NAME, "
        "writing the same run directory as the PyTorch engine. Several GPUs train the seed's "
        "way: one process, a list of contexts, a 'device' kvstore.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
    )
    d = (lambda v: argparse.SUPPRESS) if suppress_defaults else (lambda v: v)
    run = p.add_argument_group("run")
    run.add_argument("--engine", choices=("pytorch", "mxnet"), default=d("mxnet"))
    run.add_argument("--data", required=True, metavar="DIR", help="dataset root (any layout "
                     "the PyTorch engine reads)")  # fmt: skip
    run.add_argument("--runs-dir", default=d("runs"), metavar="RUNS")
    run.add_argument("--name", required=True, help="run name; the run directory is RUNS/NAME")
    run.add_argument("--resume", action="store_true", default=d(False))
    run.add_argument("--resume-or-start", action="store_true", default=d(False))
    run.add_argument("--background", action="store_true", default=d(False))
    run.add_argument("--demo", action="store_true", default=d(False))

    model = p.add_argument_group("model")
    model.add_argument("--arch", default=d("resnet18_v2"), help=f"one of: {', '.join(ARCHS)}")
    model.add_argument("--width", type=float, default=d(1.0), help="channel multiplier")

    data = p.add_argument_group("data")
    data.add_argument("--image-size", type=int, default=d(224), metavar="S")
    data.add_argument("--workers", type=int, default=d(min(8, os.cpu_count() or 1)))
    data.add_argument("--min-crop-scale", type=float, default=d(0.08))
    data.add_argument("--val-fraction", type=float, default=d(0.1))

    opt = p.add_argument_group("optimization")
    opt.add_argument("--epochs", type=int, default=d(30))
    opt.add_argument(
        "--batch-size",
        type=int,
        default=d(144),
        help="global batch, split over the devices (the seed's 144 was 4 x 36)",
    )
    opt.add_argument("--lr", type=float, default=d(0.1))
    opt.add_argument("--momentum", type=float, default=d(0.9))
    opt.add_argument("--weight-decay", type=float, default=d(1e-4))
    opt.add_argument("--label-smoothing", type=float, default=d(0.0))

    sched = p.add_argument_group("learning-rate schedule (mx.lr_scheduler)")
    sched.add_argument("--lr-schedule", choices=SCHEDULES, default=d("step"),
                       help="step: MultiFactorScheduler; factor: FactorScheduler every epoch; "
                       "cosine: CosineScheduler")  # fmt: skip
    sched.add_argument("--lr-steps", type=_int_list, default=d([10, 20]), metavar="E,E")
    sched.add_argument("--lr-gamma", type=float, default=d(0.1))
    sched.add_argument("--lr-factor", type=float, default=d(0.94))
    sched.add_argument("--min-lr-factor", type=float, default=d(0.0))
    sched.add_argument("--warmup-epochs", type=float, default=d(0.0))

    dev = p.add_argument_group("devices")
    dev.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d("auto"))
    dev.add_argument("--num-devices", type=int, default=d(0), metavar="N",
                     help="contexts to split each batch over (0: every visible GPU, or one CPU; "
                     "N CPU contexts exercise the multi-device path without GPUs)")  # fmt: skip
    # accepted for a shared command line; MXNet trains in float32 NCHW without compilation
    dev.add_argument("--no-amp", dest="amp", action="store_false", default=d(True))
    dev.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                     default=d(True))  # fmt: skip
    dev.add_argument("--compile", action="store_true", default=d(False))

    out = p.add_argument_group("output")
    out.add_argument("--keep-checkpoints", type=int, default=d(2), metavar="K")
    out.add_argument("--keep-models", type=int, default=d(0), metavar="K")
    out.add_argument("--log-interval", type=int, default=d(10), metavar="STEPS")
    out.add_argument("--device-interval", type=float, default=d(5.0), metavar="SECONDS")
    out.add_argument("--seed", type=int, default=d(0))
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 10,20, got {text!r}") from None


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, set[str]]:
    """The resolved arguments and the names the user gave explicitly."""
    args = get_parser().parse_args(argv)
    explicit = set(vars(get_parser(suppress_defaults=True).parse_args(argv)))
    if args.demo:
        for key, value in DEMO_PRESET.items():
            if key not in explicit:
                setattr(args, key, value)
    return args, explicit


def validate(args: argparse.Namespace, explicit: set[str]) -> None:
    """Raise UsageError, in one line, for what the MXNet engine cannot do."""
    if args.compile:
        raise UsageError("--compile is a PyTorch option (torch.compile); the MXNet engine "
                         "hybridizes its Gluon model instead: drop --compile")  # fmt: skip
    if "channels_last" in explicit:
        raise UsageError("--no-channels-last is a PyTorch option; MXNet always trains NCHW")
    if args.arch not in ARCHS:
        raise UsageError(
            f"architecture {args.arch!r} is not in Gluon's model zoo; the MXNet engine offers "
            f"{', '.join(ARCHS)} (the PyTorch engine has the rest)"
        )
    checks = [
        (args.epochs >= 1, "--epochs must be at least 1"),
        (args.batch_size >= 1, "--batch-size must be at least 1"),
        (args.image_size >= 16, "--image-size must be at least 16"),
        (args.width > 0, "--width must be positive"),
        (args.workers >= 0, "--workers must be 0 or more"),
        (args.lr > 0, "--lr must be positive"),
        (0 < args.min_crop_scale <= 1, "--min-crop-scale must be in (0, 1]"),
        (0 <= args.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (args.num_devices >= 0, "--num-devices must be 0 (all) or more"),
        (args.keep_checkpoints >= 1, "--keep-checkpoints must be at least 1"),
        (args.keep_models >= 0, "--keep-models must be 0 (all) or more"),
        (args.log_interval >= 1, "--log-interval must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def parse_arch(arch: str) -> tuple[int, int]:
    """``resnet50_v2`` -> (version 2, depth 50)."""
    depth, version = arch.removeprefix("resnet").split("_v")
    return int(version), int(depth)
