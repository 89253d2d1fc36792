"""``python -m trainer predict``: the top-5 classes of images, with a run's exported model.

Prints the seed's "Neko" format. Uses ``models/epoch-NNNN.onnx`` through onnxruntime (what the
dashboard uses), or with ``--engine torch`` the epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from epochscope.layout import CHECKPOINTS, MODEL_SUFFIX, MODELS, epoch_of, epochs_in
from epochscope.predictions import softmax
from epochscope.preprocess import preprocess
from epochscope.reader import read_classes, read_run_info
from trainer.data import IMAGE_ERRORS


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer predict",
        description="Print the top-5 labels of each IMAGE with a run's model after epoch E.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--runs-dir", default="runs", metavar="RUNS", help="(default: runs)")
    p.add_argument("--run", required=True, metavar="NAME", help="run name")
    p.add_argument("--epoch", type=int, help="epoch whose model to use (default: the newest)")
    p.add_argument(
        "--engine",
        choices=("onnx", "torch"),
        default="onnx",
        help="onnx: models/epoch-E.onnx via onnxruntime; torch: checkpoints/epoch-E.pt",
    )
    p.add_argument("--top", type=int, default=5, help="how many classes (default: 5)")
    return p


class PredictError(ValueError):
    pass


def load_classes(run_dir: Path) -> list[tuple[str, str]]:
    """(wnid, label) per class; ImageNet classes get the catalogue's full lemma list."""
    rows = [(wnid, name) for _, wnid, name in read_classes(run_dir)]
    try:
        from epochscope.catalogue import load_catalogue

        cat = load_catalogue()
        return [(w, ", ".join(cat.by_wnid(w).lemmas) if w in cat else n) for w, n in rows]
    except (ImportError, OSError):
        return rows


def pick_file(folder: Path, suffix: str, epoch: int | None) -> tuple[Path, int]:
    epochs = epochs_in(folder, suffix)
    if not epochs:
        raise PredictError(f"no epoch-*{suffix} files in {folder}")
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise PredictError(
            f"no {folder.name} file for epoch {epoch} in {folder}; have epochs "
            f"{', '.join(map(str, epochs))}"
        )
    return next(p for p in folder.glob(f"epoch-*{suffix}") if epoch_of(p) == epoch), epoch


def onnx_classifier(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def torch_classifier(path: Path, hparams: dict, num_classes: int):
    import torch

    from trainer.models import create_model

    state = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(hparams["arch"], num_classes=num_classes, width=hparams["width"])
    model.load_state_dict(state["model"])
    model.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run_dir = Path(args.runs_dir) / args.run
    try:
        try:
            info = read_run_info(run_dir)
            classes = load_classes(run_dir)
        except LookupError:
            raise PredictError(f"no run {args.run!r} in {args.runs_dir}") from None
        except ValueError as e:
            raise PredictError(str(e)) from None
        if info.preprocess is None:
            raise PredictError(f"run {args.run!r} records no preprocessing (no model logged)")
        if args.engine == "onnx":
            path, epoch = pick_file(run_dir / MODELS, MODEL_SUFFIX, args.epoch)
            classify = onnx_classifier(path)
        else:
            path, epoch = pick_file(run_dir / CHECKPOINTS, ".pt", args.epoch)
            classify = torch_classifier(path, info.hparams, len(classes))
        batch = []
        for image in args.images:
            try:
                # the run's own preprocessing, exactly as its validation and the dashboard
                batch.append(preprocess(image, info.preprocess))
            except FileNotFoundError:
                raise PredictError(f"no such image: {image}") from None
            except IMAGE_ERRORS as e:
                raise PredictError(f"{image} is not a readable image ({e})") from None
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    prob = softmax(classify(np.stack(batch)))
    k = min(args.top, prob.shape[1])
    for image, p in zip(args.images, prob, strict=True):
        top = np.argsort(-p)[:k]
        wnid, label = classes[top[0]]
        print(f"{image}  (run {args.run}, epoch {epoch}, {path.name})")
        print(f'Predicted top class: "{wnid} {label}"')
        print(f"Top {k} predictions:")
        for rank, c in enumerate(top, 1):
            wnid, label = classes[c]
            print(f'[{rank}] "{wnid} {label}"  {p[c]:.3f}')
        print()
    return 0
