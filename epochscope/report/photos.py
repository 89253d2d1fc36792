"""Photos classified for the report (``--photo``): each through the epoch's ONNX model with
onnxruntime, prepared as the dashboard prepares an upload (epochscope.preprocess), top-5 with
percentages. Only the photo's file name and a small thumbnail go into the report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from epochscope.predictions import softmax, top_indices
from epochscope.report.safe import esc

if TYPE_CHECKING:
    from epochscope.run import Run


@dataclass(frozen=True)
class Classified:
    name: str  # the photo's file name (no folders)
    thumbnail: str | None  # data URI
    top: list[tuple[str, float]]  # (class name, probability), best first


def model_epoch(run: Run, epoch: int) -> int:
    """The epoch whose model classifies: ``epoch`` when it has one, else the newest before it;
    LookupError when the run has no model."""
    have = [e for e in run.model_epochs if e <= epoch] or run.model_epochs
    if not have:
        raise LookupError(f"run {run.name!r} has no ONNX model to classify photos with")
    return have[-1]


def classify(
    run: Run, epoch: int, photos: list[str | os.PathLike[str]], k: int = 5
) -> tuple[int, list[Classified]]:
    """(the model's epoch, each photo's top-k); ValueError naming a photo that cannot be read."""
    import onnxruntime as ort

    from epochscope.images import thumbnail_uri
    from epochscope.layout import read_regular
    from epochscope.reader import model_path
    from epochscope.similar import image_tensor

    pre = run.info.preprocess
    if pre is None:
        raise LookupError(f"run {run.name!r} records no preprocessing: it has no model")
    e = model_epoch(run, epoch)
    data = read_regular(model_path(run.path, e), within=run.path)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    out = []
    for photo in photos:
        path = Path(photo)
        try:
            batch = image_tensor(path, pre)[None]
        except (OSError, ValueError) as err:
            raise ValueError(
                f"--photo {path.name}: cannot be read as an image ({type(err).__name__})"
            ) from None
        logits = session.run([pre.output], {pre.input_name: batch})[0]
        probs = softmax(np.asarray(logits, np.float32))[0]
        top = top_indices(probs[None], min(k, len(probs)))[0]
        best = [(run.names[int(i)], float(probs[int(i)])) for i in top]
        out.append(Classified(path.name, thumbnail_uri(path, 128), best))
    return e, out


def photos_html(epoch: int, classified: list[Classified]) -> str:
    cards = []
    for c in classified:
        img = f'<img src="{esc(c.thumbnail)}" alt="{esc(c.name)}">' if c.thumbnail else ""
        rows = "".join(
            f"<tr><td class='num'>{100 * p:.2f}%</td><td><span class='bar' "
            f"style='width:{max(1, round(80 * p))}px'></span></td><td>{esc(n)}</td></tr>"
            for n, p in c.top
        )
        cards.append(f'<div class="thumb" style="width:auto">{img}<div><b>{esc(c.name)}</b></div>'
                     f"<table>{rows}</table></div>")  # fmt: skip
    return (f"<p class='note'>Classified by the model of epoch {esc(epoch)}.</p>"
            f'<div class="thumbs">{"".join(cards)}</div>')  # fmt: skip
