"""Similar images: the validation images whose stored embeddings are nearest (cosine) to a
validation row's, or to a photo's.

A photo is run through the epoch's ONNX model (its second output ``embedding``, the features
feeding the final linear layer) and projected with the epoch's stored projection, so it lands in
the same space as the validation images; the model and the embeddings must be the same epoch's.
The search is exact (:func:`epochscope.embeddings.nearest`).

The pure part (:func:`neighbours`, :func:`embedding_of`) is shared with the dashboard, which runs
the model through its own session cache and time limits; :func:`photo_features` runs it here with
onnxruntime, imported when called (epochscope does not need it at import).
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from epochscope.embeddings import EMBEDDINGS_MISSING, nearest
from epochscope.records import ONNX_EMBEDDING, Preprocess

if TYPE_CHECKING:
    from epochscope.run import Run

#: the most neighbours one query returns
MAX_K = 100
#: what a query says when the epoch's model cannot place a photo among the embeddings
NO_EMBEDDING_OUTPUT = (
    "the model of epoch {epoch} has no 'embedding' output (exported before Epochscope added it, "
    "or its classifier head was not found), so a photo cannot be placed among the validation "
    "embeddings; similar images of a validation image still work"
)


def check_k(k: Any) -> int:
    """``k`` as a whole number in 1..:data:`MAX_K`; ValueError otherwise."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer | str):
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    try:
        value = int(k)
    except ValueError:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}") from None
    if not 1 <= value <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    return value


def search_epoch(run: Run, epoch: int | None, need_model: bool) -> int:
    """The epoch a query searches: ``epoch``, or the newest with embeddings (and a model when
    ``need_model``); LookupError saying what is missing."""
    have = run.embedding_epochs
    if not have:
        raise LookupError(f"run {run.name!r} has no embeddings: {EMBEDDINGS_MISSING}")
    if epoch is None:
        both = [e for e in have if e in run.model_epochs] if need_model else have
        if not both:
            raise LookupError(
                f"run {run.name!r} has no epoch with both embeddings and a model: a photo's "
                "neighbours need the model of the same epoch as the embeddings"
            )
        return both[-1]
    if epoch not in have:
        raise LookupError(
            f"run {run.name!r} has no embeddings for epoch {epoch} (it has them for epochs "
            f"{', '.join(map(str, have))}): {EMBEDDINGS_MISSING}"
        )
    if need_model and epoch not in run.model_epochs:
        raise LookupError(
            f"run {run.name!r} has no model for epoch {epoch}: a photo's neighbours need the "
            "model of the same epoch as the embeddings (a keep policy may have removed it)"
        )
    return epoch


def embedding_of(run: Run, epoch: int, features: np.ndarray) -> np.ndarray:
    """A photo's model features [F] in the epoch's embedding space [D]."""
    projection = run.embeddings(epoch).projection
    return projection(np.asarray(features, np.float32).reshape(-1))


def neighbours(run: Run, epoch: int, query: np.ndarray | int, k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` validation images nearest to ``query`` (a validation row, itself left out, or
    a vector in the epoch's embedding space), closest first: ``index``, ``path``, ``label``,
    ``label_name``, ``distance`` (1 - cosine similarity)."""
    unit = run.unit_embeddings(epoch)
    if isinstance(query, int | np.integer):
        row = int(query)
        if not 0 <= row < len(unit):
            raise ValueError(f"index {row} is not a validation row (0..{len(unit) - 1})")
        indices, distances = nearest(unit, unit[row], k, exclude=row)
    else:
        indices, distances = nearest(unit, query, k)
    labels, paths, names = run.labels, run.paths, run.names
    return [
        {
            "index": int(i),
            "path": paths[i],
            "label": int(labels[i]),
            "label_name": names[int(labels[i])],
            "distance": round(float(d), 6),
        }
        for i, d in zip(indices, distances, strict=True)
    ]


def has_embedding_output(session: Any) -> bool:
    """Whether an onnxruntime session's model gives the ``embedding`` output."""
    return any(o.name == ONNX_EMBEDDING for o in session.get_outputs())


def image_tensor(image: Any, pre: Preprocess) -> np.ndarray:
    """A photo (a path, its bytes, a PIL image or an RGB uint8 array [H, W, 3]) as the model's
    input [3, S, S], prepared as the dashboard's classifier prepares uploads."""
    from PIL import Image

    from epochscope.preprocess import prepare, preprocess, to_rgb

    if isinstance(image, str | os.PathLike):
        return preprocess(image, pre)
    if isinstance(image, bytes | bytearray | memoryview):
        return preprocess(io.BytesIO(bytes(image)), pre)
    if isinstance(image, Image.Image):
        return prepare(to_rgb(image), pre)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8:
        return prepare(to_rgb(Image.fromarray(array)), pre)
    raise ValueError(
        "image must be a validation row (int), a path, bytes, a PIL image or a uint8 array "
        f"[H, W, 3], not {type(image).__name__} {getattr(array, 'shape', '')}"
    )


def photo_features(run: Run, epoch: int, image: Any) -> np.ndarray:
    """The epoch's ONNX model's ``embedding`` output [F] for one photo (onnxruntime here, on
    the CPU); LookupError when the model has no such output."""
    import onnxruntime as ort

    from epochscope.layout import read_regular
    from epochscope.reader import model_path

    pre = run.info.preprocess
    if pre is None:
        raise LookupError(f"run {run.name!r} records no preprocessing: it has no model")
    data = read_regular(model_path(run.path, epoch), within=run.path)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    if not has_embedding_output(session):
        raise LookupError(NO_EMBEDDING_OUTPUT.format(epoch=epoch))
    batch = image_tensor(image, pre)[None]
    return session.run([ONNX_EMBEDDING], {pre.input_name: batch})[0][0]


def similar(run: Run, image_or_index: Any, k: int = 10, epoch: int | None = None) -> Any:
    """:meth:`epochscope.Run.similar`: a pandas DataFrame of :func:`neighbours`."""
    import pandas as pd

    k = check_k(k)
    is_row = isinstance(image_or_index, int | np.integer) and not isinstance(image_or_index, bool)
    e = search_epoch(run, epoch, need_model=not is_row)
    if is_row:
        rows = neighbours(run, e, int(image_or_index), k)
    else:
        rows = neighbours(run, e, embedding_of(run, e, photo_features(run, e, image_or_index)), k)
    columns = ["index", "path", "label", "label_name", "distance"]
    return pd.DataFrame(rows, columns=columns)
