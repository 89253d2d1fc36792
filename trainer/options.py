"""``python -m trainer train``'s command line, one parser for both engines.

Imports neither torch nor MXNet: the MXNet engine parses in ``.venv-mxnet`` (numpy 1.23, no
torch) and refuses a bad command line before MXNet's slow import. Options one engine cannot
honour are refused by that engine in one line (:func:`validate`), never silently dropped.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from epochscope.hierarchy import as_taxonomy
from epochscope.layout import check_run_name
from epochscope.records import MAX_PREPROCESS_SIDE, resize_size_for
from epochscope.storage.location import check_location
from trainer import recipe
from trainer.presets import DEMO_PRESET

ENGINES = ("pytorch", "mxnet")
SCHEDULES = ("step", "factor", "cosine", "constant")
# Gluon's model zoo: ResNet v1 and v2 at these depths (no 200 or 269)
GLUON_DEPTHS = (18, 34, 50, 101, 152)
GLUON_ARCHS = tuple(f"resnet{d}_v{v}" for v in (2, 1) for d in GLUON_DEPTHS)

# options a resumed run takes from this command line when given; the rest come from the run
RUNTIME_OPTIONS = frozenset(
    {
        "workers",
        "device",
        "num_devices",
        "amp",
        "channels_last",
        "compile",
        "log_interval",
        "device_interval",
        "keep_checkpoints",
        "keep_models",
        "embeddings",
        "epochs",
    }
)

# engine-specific options: (dest, engine that has it, the other engine's one-line refusal)
ENGINE_ONLY = (
    (
        "compile",
        "pytorch",
        "--compile is a PyTorch option (torch.compile); the MXNet engine "
        "hybridizes its Gluon model instead: drop --compile",
    ),
    (
        "channels_last",
        "pytorch",
        "--no-channels-last is a PyTorch option; MXNet always trains NCHW",
    ),
    (
        "threshold_samples",
        "pytorch",
        "--threshold-samples is a PyTorch-engine option for now: drop --engine mxnet to train "
        "with threshold samples",
    ),
    (
        "num_devices",
        "mxnet",
        "--num-devices is an MXNet option; the PyTorch engine runs one "
        "process per GPU: torchrun --nproc-per-node N -m trainer train ...",
    ),
)

DESCRIPTIONS = {
    "pytorch": "Train a ResNet on an image-folder dataset (ImageNet layouts included), "
    "streaming curves, top-5 predictions and ONNX models to RUNS/NAME for the dashboard. "
    "Defaults follow the seed: ResNet-18 v2, batch 144, 30 epochs, SGD with momentum, "
    "top-5 accuracy as the headline metric. Run under torchrun for several GPUs or nodes.",
    "mxnet": "Train a Gluon ResNet with MXNet 1.9.1 (the seed's framework) into RUNS/NAME, "
    "writing the same run directory as the PyTorch engine. Several GPUs train the seed's "
    "way: one process, a list of contexts, a 'device' kvstore.",
}


class UsageError(ValueError):
    """A problem with the command line or the run directory, told in one line."""


def get_parser(
    engine: str = "pytorch", archs: Sequence[str] = (), suppress_defaults: bool = False
) -> argparse.ArgumentParser:
    """The parser of ``engine``; ``archs`` names the architectures its help lists."""
    p = argparse.ArgumentParser(
        prog="python -m trainer train" + ("" if engine == "pytorch" else f" --engine {engine}"),
        description=DESCRIPTIONS[engine],
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
        choices=ENGINES,
        default=d(engine),
        help="mxnet: train with MXNet 1.9.1 in .venv-mxnet (make install-mxnet); "
        "`--engine mxnet --help` lists its options",
    )
    flags = (
        ("--resume", "continue NAME from its newest checkpoint, with its saved settings"),
        ("--resume-or-start", "resume NAME when it exists, else start it"),
        ("--background", "start detached: output to RUNS/NAME/train.log, pid in trainer.pid"),
        (
            "--demo",
            "preset for the demo dataset: "
            + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in DEMO_PRESET.items())
            + " (explicit options still win)",
        ),
    )
    for flag, about in flags:
        run.add_argument(flag, action="store_true", default=d(False), help=about)

    model = p.add_argument_group("model")
    model.add_argument("--arch", default=d("resnet18_v2"), help=f"one of: {', '.join(archs)}")
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
        "--hierarchy",
        default=d(None),
        metavar="FILE",
        help="a class hierarchy TSV (id, parent, name; e.g. assets/cifar100/hierarchy.tsv) "
        "copied into the run: the confusion matrix's order, bands and relatedness",
    )
    data.add_argument(
        "--exclude",
        default=d(None),
        metavar="FILE",
        help="train without these training images: a CSV with a path or index column (the "
        "training-set ranking's CSV, e.g. its top rows) or one path or index per line",
    )
    data.add_argument(
        "--relabel",
        default=d(None),
        metavar="FILE",
        help="train these training images with new labels: a CSV with path or index and "
        "new_label (or the ranking's suggested) columns, or 'image,label' lines; a label is a "
        "class index, folder name or name",
    )
    data.add_argument(
        "--threshold-samples",
        type=float,
        default=d(None),
        metavar="SHARE",
        help="AUM's threshold samples (Pleiss et al. 2020): this share of the training images "
        "(e.g. 1 / (classes + 1)), chosen by --seed, trains with an extra fake class; their "
        "AUM sets the cut-off below which the training-set ranking flags an image (its "
        "'flagged' column). The fake class never reaches the predictions or the model; "
        "PyTorch engine, ResNets",
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
        help="global batch, split over all processes or devices (the seed's 144 was 4 x 36)",
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
        "--lr-factor after every epoch; cosine: cosine decay to "
        "--min-lr-factor",
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
        help="CUDA: train in float32 instead of bf16 autocast (MXNet always trains float32)",
    )
    dev.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default=d(True),
        help="PyTorch: keep the NCHW memory format (channels_last is faster on CUDA and CPU)",
    )
    dev.add_argument(
        "--compile",
        action="store_true",
        default=d(False),
        help="PyTorch, CUDA: torch.compile the model (slow first epoch, faster after)",
    )
    dev.add_argument(
        "--num-devices",
        type=int,
        default=d(0),
        metavar="N",
        help="MXNet: contexts to split each batch over (0: every visible GPU, or "
        "one CPU; N CPU contexts exercise the multi-device path without GPUs)",
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
        "--no-embeddings",
        dest="embeddings",
        action="store_false",
        default=d(True),
        help="do not store each epoch's validation embeddings (the penultimate "
        "features after a PCA to 128 dimensions, float16; pruned with the models)",
    )
    out.add_argument(
        "--no-train-stats",
        dest="train_stats",
        action="store_false",
        default=d(True),
        help="do not record each training image's statistics per epoch (its label's "
        "probability and margin from the training step's own logits, for the training-set "
        "label errors and the data map; about 6 bytes an image an epoch)",
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
    # --recipe, --stem, --augment, --nesterov, --norm-decay, --cache, --decode; the MXNet engine
    # trains the seed's way and keeps its own defaults (validate refuses the rest)
    recipe.add_arguments(p, suppress_defaults, manage=engine == "pytorch")
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 10,20, got {text!r}") from None


def parse_args(
    argv: Sequence[str], engine: str = "pytorch", archs: Sequence[str] = ()
) -> tuple[argparse.Namespace, set[str]]:
    """The resolved arguments (``--demo`` applied) and the names the user gave explicitly."""
    args = get_parser(engine, archs).parse_args(argv)
    explicit = set(vars(get_parser(engine, archs, suppress_defaults=True).parse_args(argv)))
    if args.demo:
        for key, value in DEMO_PRESET.items():
            if key not in explicit:
                setattr(args, key, value)
    if engine == "pytorch":  # what the recipe decides; explicit options and the preset win
        recipe.apply(args, explicit | (set(DEMO_PRESET) if args.demo else set()))
    return args, explicit


def check_runs_dir(runs_dir: str) -> None:
    """StorageError (a ValueError) for a runs folder that is neither a folder nor a bucket
    whose storage library is installed (``s3:bucket`` never becomes a folder named ``s3:``)."""
    check_location(runs_dir)


def validate(
    args: argparse.Namespace, explicit: set[str], engine: str, archs: Sequence[str]
) -> None:
    """Raise UsageError, in one line, for a bad value or what ``engine`` cannot do."""
    try:
        check_run_name(args.name)
        check_runs_dir(args.runs_dir)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for dest, owner, refusal in ENGINE_ONLY:
        if owner != engine and dest in explicit:
            raise UsageError(refusal)
    if engine != "pytorch" and (seed_only := recipe.seed_only_refusal(args, explicit)):
        raise UsageError(seed_only)
    if args.arch not in archs:
        if engine == "mxnet":
            raise UsageError(
                f"architecture {args.arch!r} is not in Gluon's model zoo; the MXNet engine "
                f"offers {', '.join(archs)} (the PyTorch engine has the rest)"
            )
        raise UsageError(f"unknown architecture {args.arch!r}; choose from: {', '.join(archs)}")
    checks = [
        (args.epochs >= 1, "--epochs must be at least 1"),
        (args.batch_size >= 1, "--batch-size must be at least 1"),
        (args.image_size >= 16, "--image-size must be at least 16"),
        (
            resize_size_for(args.image_size) <= MAX_PREPROCESS_SIDE,
            f"--image-size must be at most 896 (its {MAX_PREPROCESS_SIDE} px resize is the "
            "largest a classifier of the run reads)",
        ),
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
    share = args.threshold_samples
    if share is not None and not (0 < share < 0.5):
        raise UsageError(f"--threshold-samples {share:g}: a share between 0 and 0.5")
    if share and not args.train_stats:
        raise UsageError("--threshold-samples needs the training statistics: drop --no-train-stats")
    for flag, value in (("--exclude", args.exclude), ("--relabel", args.relabel)):
        if value and not Path(value).is_file():
            raise UsageError(f"{flag} {value}: no such file")
    if args.hierarchy:  # read now: a bad file fails before anything is written
        try:
            as_taxonomy(Path(args.hierarchy))
        except ValueError as e:
            raise UsageError(f"--hierarchy: {e}") from None
