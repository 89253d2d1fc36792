"""Training recipes: defaults that adapt to the images and the length of the run.

``auto`` (the default) looks at ``--image-size`` and ``--epochs``: at 64 px or less it picks the
small-image stem (3x3 stride 1, no max-pool: the ImageNet stem leaves 8 x 8 of a 32 px photo),
a zero-padded random crop + flip instead of RandomResizedCrop(0.08), weight decay 5e-4 and the
whole image for evaluation; at any size SGD with Nesterov momentum, cosine decay after a linear
warm-up of ~15% of the run (capped at 5 epochs), label smoothing 0.1 and no weight decay on
norms and biases. ``seed`` keeps the seed's: ImageNet stem, the per-epoch ``factor`` schedule,
plain momentum, no smoothing, RandomResizedCrop(0.08), resize 256/224 then centre crop.

Pure functions of the arguments (no torch at import), so the choice is unit-tested and the
resolved values land in run.json's ``hparams`` like any other option. An option given on the
command line always wins over the recipe.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

RECIPES = ("auto", "seed")
STEMS = ("auto", "imagenet", "small")  # "auto": decided by the recipe (trainer.models has the two)
AUGMENTS = ("auto", "pad-crop", "resized-crop")
CACHE_CHOICES = ("auto", "memory", "none")  # --cache (trainer.fastdata decides what it means)
DECODE_CHOICES = ("auto", "cpu", "gpu")  # --decode (trainer.gpu_decode)
SMALL_IMAGE_MAX = 64  # at or below this many pixels a side, the small-image defaults apply

# the existing options whose default the recipe decides (when not given on the command line)
MANAGED = ("lr", "weight_decay", "label_smoothing", "lr_schedule", "warmup_epochs",
           "min_crop_scale")  # fmt: skip
# options this module adds to the training parser
ADDED = ("recipe", "stem", "augment", "nesterov", "norm_decay", "cache", "decode")

SEED = {
    "stem": "imagenet",
    "augment": "resized-crop",
    "lr": 0.1,
    "weight_decay": 1e-4,
    "label_smoothing": 0.0,
    "lr_schedule": "factor",
    "warmup_epochs": 0.0,
    "min_crop_scale": 0.08,
    "nesterov": False,
    "norm_decay": True,
    "eval_resize": "ratio",  # shorter side 256/224 of the crop, then centre crop
}


def is_small(image_size: int) -> bool:
    return image_size <= SMALL_IMAGE_MAX


def warmup_for(epochs: int) -> float:
    """~15% of the run, at most 5 epochs, in quarter epochs."""
    return min(5.0, round(0.15 * epochs * 4) / 4) if epochs > 1 else 0.0


def resolve(recipe: str, image_size: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """Every recipe-decided option for a run of this shape."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from: {', '.join(RECIPES)}")
    if recipe == "seed":
        return dict(SEED)
    small = is_small(image_size)
    return {
        "stem": "small" if small else "imagenet",
        "augment": "pad-crop" if small else "resized-crop",
        # the linear scaling rule from 0.2 at batch 128 (0.1 at 256 for ImageNet-size images)
        "lr": round((0.2 if small else 0.1) * batch_size / (128 if small else 256), 6),
        "weight_decay": 5e-4 if small else 5e-5,
        "label_smoothing": 0.1,
        "lr_schedule": "cosine",
        "warmup_epochs": warmup_for(epochs),
        # short runs on large images: a less aggressive crop than ImageNet's 90-epoch 0.08
        "min_crop_scale": 0.08 if epochs >= 30 else 0.25,
        "nesterov": True,
        "norm_decay": False,
        "eval_resize": "full" if small else "ratio",
    }


def apply(args: argparse.Namespace, explicit: Iterable[str]) -> argparse.Namespace:
    """Fill every recipe-decided option the command line left open; ``explicit`` wins."""
    given = set(explicit)
    values = resolve(args.recipe, args.image_size, args.epochs, args.batch_size)
    for key, value in values.items():
        current = getattr(args, key, None)
        if key in given and current not in (None, "auto"):
            continue
        setattr(args, key, value)
    return args


def eval_resize_size(args: argparse.Namespace) -> int:
    """The shorter side before the evaluation centre crop: the crop itself for small images
    (the whole photo, as training saw it), else 256/224 of it."""
    if getattr(args, "eval_resize", "ratio") == "full":
        return args.image_size
    return int(args.image_size * 256 / 224)


def crop_padding(image_size: int) -> int:
    """The pad of the padded random crop: 4 px at 32 px, an eighth of the side."""
    return max(1, image_size // 8)


def describe(args: argparse.Namespace) -> str:
    """One line for the start-up message, e.g. ``recipe auto: small stem, pad-crop, ...``."""
    return (
        f"recipe {args.recipe}: {args.stem} stem, {args.augment} + flip, "
        f"{args.lr_schedule} lr {args.lr:g} (warm-up {args.warmup_epochs:g} epochs), "
        f"{'nesterov' if args.nesterov else 'momentum'}, weight decay {args.weight_decay:g}"
        f"{'' if args.norm_decay else ' (not on norms/biases)'}, "
        f"label smoothing {args.label_smoothing:g}"
    )


# --- the parser ---------------------------------------------------------------------------------
def add_arguments(
    parser: argparse.ArgumentParser, suppress_defaults: bool = False, *, manage: bool = True
) -> None:
    """Add the recipe options to the training parser and hand the managed options' defaults to
    the recipe (their help then says so instead of showing a value that would not apply).
    ``manage=False`` (the MXNet engine, which trains the seed's way) keeps the parser's own
    defaults and makes ``seed`` the default recipe."""
    d = (lambda v: argparse.SUPPRESS) if suppress_defaults else (lambda v: v)
    g = parser.add_argument_group("recipe")
    g.add_argument(
        "--recipe",
        choices=RECIPES,
        default=d("auto" if manage else "seed"),
        help="auto: defaults chosen from the image size and run length (small-image stem and "
        "padded-crop augmentation at <= 64 px, SGD nesterov, cosine with warm-up, label "
        "smoothing 0.1); seed: the seed's (ImageNet stem, factor schedule, no smoothing)",
    )
    g.add_argument(
        "--stem",
        choices=STEMS,
        default=d("auto"),
        help="small: 3x3 stride-1 conv, no max-pool; imagenet: 7x7 stride 2 + max-pool",
    )
    g.add_argument("--augment", choices=AUGMENTS, default=d("auto"),
                   help="pad-crop: zero-padded random crop + flip; resized-crop: "
                   "RandomResizedCrop(--min-crop-scale) + flip")  # fmt: skip
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=d(None),
                   help="Nesterov momentum (default: from --recipe%(default).0s)")  # fmt: skip
    g.add_argument(
        "--norm-decay",
        action=argparse.BooleanOptionalAction,
        default=d(None),
        help="weight decay on norm layers and biases too (default: from --recipe%(default).0s)",
    )
    g.add_argument(
        "--cache", choices=CACHE_CHOICES, default=d("auto"),
        help="auto: decode the images once into memory when the padded-crop augmentation is "
        "used and they fit (a quarter of the free memory); memory: always; none: read the "
        "files (or a prepared store) every epoch",
    )  # fmt: skip
    g.add_argument(
        "--decode", choices=DECODE_CHOICES, default=d("auto"),
        help="where training JPEGs decode when they are read every epoch: auto: on the GPU "
        "(nvJPEG via torchvision) when CUDA and torchvision's decoder work, else the CPU; "
        "cpu; gpu (an error when it cannot)",
    )  # fmt: skip
    if suppress_defaults or not manage:
        return
    for action in parser._actions:  # argparse has no public way to change a default's help
        if action.dest in MANAGED:
            action.default = None
            # "%(default).0s" prints nothing but stops the formatter adding "(default: None)"
            action.help = (action.help or "").rstrip() + " (default: from --recipe%(default).0s)"


# --- the optimizer ------------------------------------------------------------------------------
def param_groups(model: Any, weight_decay: float, norm_decay: bool) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: without ``norm_decay``, norm weights and biases (every
    parameter with one dimension) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if norm_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# --- resume -------------------------------------------------------------------------------------
# what a run started before recipes existed was trained with (it never saved these keys)
_BEFORE_RECIPES = {k: SEED[k] for k in ("stem", "augment", "nesterov", "norm_decay", "eval_resize")}


def complete_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """A resumed run's saved arguments with the recipe keys an older run lacks filled in as it
    was trained (the seed's stem and augmentation), so its checkpoint still loads."""
    if "recipe" in saved:
        return saved
    return {**_BEFORE_RECIPES, "recipe": "seed", **saved}


def seed_only_refusal(args: argparse.Namespace, explicit: Iterable[str]) -> str | None:
    """For an engine that trains only the seed's way (MXNet): the one-line refusal of a recipe
    option it cannot honour, or None."""
    given = set(explicit)
    wanted = {
        "recipe": (getattr(args, "recipe", "seed"), "seed"),
        "stem": (getattr(args, "stem", "auto"), ("auto", "imagenet")),
        "augment": (getattr(args, "augment", "auto"), ("auto", "resized-crop")),
        "nesterov": (getattr(args, "nesterov", None), (None, False)),
        "norm_decay": (getattr(args, "norm_decay", None), (None, True)),
        "cache": (getattr(args, "cache", "auto"), ("auto", "none")),
        "decode": (getattr(args, "decode", "auto"), ("auto", "cpu")),
    }
    for key, (value, ok) in wanted.items():
        allowed = ok if isinstance(ok, tuple) else (ok,)
        if key in given and value not in allowed:
            flag = f"--{key.replace('_', '-')}"
            return (f"{flag} {value} is a PyTorch-engine option; the MXNet engine trains with "
                    "the seed's recipe (ImageNet stem, resized crops): drop it or use "
                    "--engine pytorch")  # fmt: skip
    return None
