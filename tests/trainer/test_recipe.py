"""The recipe's choices (trainer.recipe), the stem option of the models, and the recipe's parts
as the trainer's parser and optimizer see them."""

from __future__ import annotations

import argparse

import pytest
import torch

from trainer import recipe
from trainer.models import create_model


def _args(**kw) -> argparse.Namespace:
    base = dict(recipe="auto", image_size=32, epochs=6, batch_size=128, stem="auto",
                augment="auto", nesterov=None, norm_decay=None, lr=None, weight_decay=None,
                label_smoothing=None, lr_schedule=None, warmup_epochs=None,
                min_crop_scale=None)  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def test_small_images_get_the_small_image_recipe():
    r = recipe.resolve("auto", 32, 6, 128)
    assert r["stem"] == "small" and r["augment"] == "pad-crop" and r["eval_resize"] == "full"
    assert r["nesterov"] and not r["norm_decay"] and r["label_smoothing"] == 0.1
    assert r["lr_schedule"] == "cosine" and 0 < r["warmup_epochs"] <= 1
    assert r["lr"] == pytest.approx(0.2) and r["weight_decay"] == 5e-4


@pytest.mark.parametrize("size", [64, 65, 224])
def test_the_threshold_between_small_and_large(size):
    r = recipe.resolve("auto", size, 30, 256)
    assert r["stem"] == ("small" if size <= 64 else "imagenet")
    assert r["augment"] == ("pad-crop" if size <= 64 else "resized-crop")


def test_large_images_keep_the_imagenet_stem_and_scale_lr_with_batch():
    long, short = recipe.resolve("auto", 224, 90, 512), recipe.resolve("auto", 224, 6, 256)
    assert long["lr"] == pytest.approx(0.2) and short["lr"] == pytest.approx(0.1)
    assert long["warmup_epochs"] == 5.0 and short["warmup_epochs"] == 1.0
    assert long["min_crop_scale"] == 0.08 and short["min_crop_scale"] == 0.25


def test_seed_recipe_is_the_seeds_whatever_the_size():
    for size in (32, 224):
        r = recipe.resolve("seed", size, 6, 128)
        assert r == recipe.SEED
    assert recipe.SEED["stem"] == "imagenet" and recipe.SEED["lr_schedule"] == "factor"


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        recipe.resolve("fast", 32, 6, 128)


def test_explicit_options_win_over_the_recipe():
    args = recipe.apply(_args(lr=0.05, stem="imagenet", nesterov=False), {"lr", "stem", "nesterov"})
    assert (args.lr, args.stem, args.nesterov) == (0.05, "imagenet", False)
    assert args.augment == "pad-crop" and args.label_smoothing == 0.1  # the rest from the recipe
    # "auto" given explicitly still means "let the recipe decide"
    assert recipe.apply(_args(stem="auto"), {"stem"}).stem == "small"


def test_saved_args_of_a_run_from_before_recipes_resume_as_the_seed():
    old = {"lr": 0.1, "lr_schedule": "step", "image_size": 32}
    done = recipe.complete_saved(old)
    assert done["stem"] == "imagenet" and done["augment"] == "resized-crop"
    assert done["lr_schedule"] == "step"  # what the run was trained with stays
    new = {"recipe": "auto", "stem": "small"}
    assert recipe.complete_saved(new) == new


def test_parser_help_names_the_recipe_not_a_stale_default():
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--lr", type=float, default=0.1, help="base learning rate")
    recipe.add_arguments(p)
    text = p.format_help()
    assert "base learning rate (default: from --recipe)" in " ".join(text.split())
    assert "None" not in text
    assert p.parse_args([]).lr is None and p.parse_args(["--no-nesterov"]).nesterov is False


def test_eval_resize_and_padding():
    assert recipe.eval_resize_size(argparse.Namespace(image_size=32, eval_resize="full")) == 32
    assert recipe.eval_resize_size(argparse.Namespace(image_size=224, eval_resize="ratio")) == 256
    assert recipe.crop_padding(32) == 4 and recipe.crop_padding(8) == 1


def test_norms_and_biases_get_no_weight_decay_unless_asked():
    model = create_model("resnet18_v2", num_classes=10, width=0.25)
    decay, rest = recipe.param_groups(model, 5e-4, norm_decay=False)
    assert all(p.ndim > 1 for p in decay["params"]) and rest["weight_decay"] == 0.0
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))
    (one,) = recipe.param_groups(model, 5e-4, norm_decay=True)
    assert one["weight_decay"] == 5e-4


@pytest.mark.parametrize("stem,size,after", [("imagenet", 32, 8), ("small", 32, 32)])
def test_stem_sets_the_resolution_of_the_first_stage(stem, size, after):
    model = create_model("resnet18_v2", num_classes=10, width=0.25, stem=stem)
    out = model.stem(torch.zeros(1, 3, size, size))
    assert out.shape[-1] == after and model.stem_type == stem
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)
    # ImageNet's stem keeps its max-pool; the small-image stem has none
    pools = any(isinstance(m, torch.nn.MaxPool2d) for m in model.stem)
    assert pools == (stem == "imagenet")


def test_unknown_stem_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown stem 'tiny'"):
        create_model("resnet18_v2", stem="tiny")


def test_small_stem_model_exports_to_onnx_and_matches_torch():
    import numpy as np
    import onnxruntime as ort

    from trainer.export import onnx_bytes

    model = create_model("resnet18_v2", num_classes=10, width=0.25, stem="small").eval()
    session = ort.InferenceSession(onnx_bytes(model, 32), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = session.run(["logits"], {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_the_seed_only_engine_refuses_recipe_options_it_cannot_honour():
    args = argparse.Namespace(recipe="seed", stem="small", augment="auto", nesterov=None,
                              norm_decay=None, cache="auto")  # fmt: skip
    assert "--stem small is a PyTorch-engine option" in recipe.seed_only_refusal(args, {"stem"})
    assert recipe.seed_only_refusal(args, set()) is None  # not given: nothing to refuse
    args.stem = "imagenet"
    assert recipe.seed_only_refusal(args, {"stem"}) is None
    args.recipe = "auto"
    assert "--recipe auto" in recipe.seed_only_refusal(args, {"recipe"})


def test_mxnet_parser_keeps_its_own_defaults_and_the_seed_recipe():
    from trainer.options import UsageError, parse_args, validate

    args, explicit = parse_args(["--data", "d", "--name", "n"], "mxnet", ["resnet18_v2"])
    assert args.recipe == "seed" and args.lr == 0.1 and args.label_smoothing == 0.0
    validate(args, explicit, "mxnet", ["resnet18_v2"])
    args, explicit = parse_args(["--data", "d", "--name", "n", "--stem", "small"], "mxnet",
                                ["resnet18_v2"])  # fmt: skip
    with pytest.raises(UsageError, match="--stem small is a PyTorch-engine option"):
        validate(args, explicit, "mxnet", ["resnet18_v2"])
    torch_args, _ = parse_args(["--data", "d", "--name", "n", "--image-size", "32"])
    assert torch_args.recipe == "auto" and torch_args.stem == "small"
    assert torch_args.lr == pytest.approx(0.2 * 144 / 128)  # the default batch, scaled
