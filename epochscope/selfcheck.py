""":meth:`epochscope.Run.log_model`'s check: does the exported model, fed a few validation images
the way the dashboard's classifier will prepare them (run.json's ``preprocess``), agree with the
predictions the user's own pipeline logged for those images in the same epoch? Every model
logged after its epoch's predictions is checked (the first at once, later ones on the export
thread); a disagreement warns the first time and again after an epoch that agreed.

Needs onnxruntime and Pillow (the dashboard's own); without them the check is skipped. Rows whose
logged top-1 beats the runner-up by less than :data:`TIE` are left out (a near tie may flip
between frameworks). On a disagreement it tries the usual mistakes one at a time (no resize
before the crop, other mean/std) and names the one that agrees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from epochscope.records import ONNX_INPUT, Preprocess

TIE = 1e-3


def _batch(images: Any, pre: Preprocess) -> np.ndarray:
    from PIL import Image

    from epochscope.preprocess import prepare, preprocess

    if isinstance(images, np.ndarray):
        return np.stack([prepare(Image.fromarray(im), pre) for im in images])
    return np.stack([preprocess(p, pre) for p in images])


def _top1(session: Any, images: Any, pre: Preprocess) -> np.ndarray:
    (out,) = session.run(None, {ONNX_INPUT: _batch(images, pre)})[:1]
    return np.asarray(out).argmax(axis=1)


@dataclasses.dataclass(frozen=True)
class Check:
    """One model's check: ``agree`` of ``checked`` images had the logged top-1; ``message``
    (None when all agree) names the setting at fault."""

    agree: int
    checked: int
    message: str | None


def check(
    onnx: bytes, images: Any, rows: tuple[np.ndarray, np.ndarray], pre: Preprocess
) -> Check | None:
    """The model's agreement with the logged top-1, or None when it cannot be checked here
    (no onnxruntime or Pillow, or every row a near tie)."""
    try:
        import onnxruntime as ort
        from PIL import Image  # noqa: F401
    except ImportError:
        return None
    logged, margin = rows
    n = min(len(logged), len(images))
    keep = np.flatnonzero(margin[:n] >= TIE)
    if not len(keep):
        return None
    subset = images[keep] if isinstance(images, np.ndarray) else [images[i] for i in keep]
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    agree = int((_top1(session, subset, pre) == logged[keep]).sum())
    if agree == len(keep):
        return Check(agree, len(keep), None)
    return Check(agree, len(keep), _message(session, subset, logged[keep], pre, agree))


def disagreement(
    onnx: bytes, images: Any, rows: tuple[np.ndarray, np.ndarray], pre: Preprocess
) -> str | None:
    """A warning naming the setting at fault, or None when the model agrees (or cannot be
    checked here)."""
    result = check(onnx, images, rows, pre)
    return result.message if result else None


def _message(session: Any, subset: Any, logged: np.ndarray, pre: Preprocess, agree: int) -> str:
    n = len(logged)
    head = (
        f"the logged model, fed {n} validation images as the dashboard will prepare them "
        f"(image_size={pre.image_size}, resize_size={pre.resize_size}, "
        f"interpolation={pre.interpolation}, mean={pre.mean}, std={pre.std}), agrees with your "
        f"logged predictions on {agree} of {n}: the classifier page will answer differently "
        "from your model"
    )
    other_interp = "bicubic" if pre.interpolation == "bilinear" else "bilinear"
    tries = [
        ("resize_size", dataclasses.replace(pre, resize_size=pre.image_size)),
        ("interpolation", dataclasses.replace(pre, interpolation=other_interp)),
        ("mean/std", dataclasses.replace(pre, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))),
        ("mean/std", dataclasses.replace(pre, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))),
    ]
    for what, other in tries:
        if int((_top1(session, subset, other) == logged).sum()) == n:
            if what == "resize_size":
                fix = f"resize_size={pre.image_size}"
            elif what == "interpolation":
                fix = f"interpolation={other_interp!r}"
            else:
                fix = f"mean={other.mean}, std={other.std}"
            return f"{head}. With {fix} it agrees on all: pass {fix} to epochscope.init."
    return (
        f"{head}. Check that epochscope.init's image_size, resize_size, interpolation, mean and "
        "std are what your validation pipeline does."
    )
