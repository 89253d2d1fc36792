"""Validation embeddings from the logging API and similar images from a Run: log_predictions'
features=, the ONNX ``embedding`` output, Run.similar by validation row and by photo (real
run directories read back, real onnxruntime; no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader
from epochscope.embeddings import EMBEDDINGS_MISSING
from epochscope.similar import MAX_K, check_k

CLASSES = ["a", "b", "c"]


def _clusters(n_per: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features in three tight clusters (one per class) and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dims)) * 5
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


def _one_hot_logits(labels: np.ndarray) -> np.ndarray:
    return np.eye(3, dtype=np.float32)[labels] * 4


def test_log_predictions_features_store_embeddings_and_similar_finds_the_cluster(
    tmp_path: Path,
) -> None:
    features, labels = _clusters(20, 300, 0)
    with epochscope.init("emb", tmp_path, classes=CLASSES, val_labels=labels) as run:
        run.log_predictions(1, _one_hot_logits(labels), features=features)
        run.log_epoch(1)
        with pytest.raises(ValueError, match="one per image"):
            run.log_predictions(2, _one_hot_logits(labels), features=features[:-1])
        # nothing of epoch 2 was written by the refused call
        assert reader.prediction_epochs(tmp_path / "emb") == [1]
        run.log_predictions(2, _one_hot_logits(labels))  # no features: no embeddings
        run.log_epoch(2)
    run_dir = tmp_path / "emb"
    assert reader.embedding_epochs(run_dir) == [1]
    stored = reader.load_embeddings(run_dir, 1, len(labels))
    assert stored.vectors.shape == (60, 60) and stored.vectors.dtype == np.float16  # D <= N
    view = epochscope.open_run(run_dir)
    frame = view.similar(5, k=7)
    assert list(frame.columns) == ["index", "path", "label", "label_name", "distance"]
    assert len(frame) == 7 and 5 not in frame["index"].tolist()
    assert (frame["label"] == 0).all() and (frame["label_name"] == "a").all()
    assert frame["distance"].is_monotonic_increasing
    # the same order as the cosine of the raw features (the PCA keeps all of them here)
    centred = features - features.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    order = np.argsort(-(unit @ unit[5]), kind="stable")
    assert frame["index"].tolist() == [i for i in order if i != 5][:7]
    with pytest.raises(LookupError, match="no embeddings for epoch 2"):
        view.similar(5, epoch=2)
    with pytest.raises(ValueError, match="not a validation row"):
        view.similar(60)


def test_run_without_embeddings_says_so(tmp_path: Path) -> None:
    labels = np.arange(6) % 3
    with epochscope.init("plain", tmp_path, classes=CLASSES, val_labels=labels) as run:
        run.log_predictions(1, _one_hot_logits(labels))
        run.log_epoch(1)
    with pytest.raises(LookupError) as e:
        epochscope.open_run(tmp_path / "plain").similar(0)
    assert EMBEDDINGS_MISSING in str(e.value)


@pytest.mark.parametrize("k", [0, MAX_K + 1, -3, 2.5, "x", True, None])
def test_k_is_checked(k) -> None:
    with pytest.raises(ValueError, match="k must be a whole number"):
        check_k(k)
    assert check_k(3) == 3 and check_k("100") == 100


def _torch_model(head: bool):
    import torch

    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
              torch.nn.Flatten()]  # fmt: skip
    if head:
        return torch.nn.Sequential(*layers, torch.nn.Linear(8, 3))

    class NoHead(torch.nn.Module):  # logits without a linear layer: nothing to hook
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(*layers)

        def forward(self, x):
            return self.body(x)[:, :3] * 2

    return NoHead()


@pytest.mark.parametrize("head", [True, False])
def test_photo_neighbours_through_the_onnx_embedding_output(tmp_path: Path, head: bool) -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from dashboard.inference import Classifier

    model = _torch_model(head).eval()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255  # mean 0, std 1 below
    labels = np.arange(24) % 3
    with torch.no_grad():
        logits = model(x)
        features = model[:-1](x) if head else model.body(x)
    with epochscope.init("photo", tmp_path, classes=CLASSES, val_labels=labels, image_size=16,
                         resize_size=16, mean=(0, 0, 0), std=(1, 1, 1)) as run:  # fmt: skip
        run.log_predictions(1, logits, features=features)
        run.log_model(1, model, check=False)
        run.log_epoch(1)
    run_dir = tmp_path / "photo"
    session = ort.InferenceSession(
        str(reader.model_path(run_dir, 1)), providers=["CPUExecutionProvider"]
    )
    outputs = [o.name for o in session.get_outputs()]
    classifier = Classifier.for_run(run_dir, 1)
    # with or without the embedding output the model classifies as before
    top = classifier.predict(x.numpy())
    assert [t[0]["index"] for t in top] == logits.argmax(1).tolist()
    view = epochscope.open_run(run_dir)
    if not head:
        assert outputs == ["logits"] and not classifier.has_embedding
        with pytest.raises(LookupError, match="no 'embedding' output"):
            view.similar(images[3])
        assert len(view.similar(3, k=4)) == 4  # a validation row needs no model
        return
    assert outputs == ["logits", "embedding"] and classifier.has_embedding
    (emb,) = session.run(["embedding"], {"input": x.numpy()[:2]})
    assert np.allclose(emb, features.numpy()[:2], atol=1e-5)
    # a validation image given as a photo finds itself first, at distance ~0, whatever form
    for form in (images[3], _png(images[3]), _png_path(tmp_path, images[3])):
        frame = view.similar(form, k=5)
        assert frame["index"].iloc[0] == 3 and frame["distance"].iloc[0] < 1e-3
        assert frame["index"].tolist()[1:] == view.similar(3, k=4)["index"].tolist()
    # the model of the same epoch is needed for a photo
    reader.model_path(run_dir, 1).unlink()
    with pytest.raises(LookupError, match="no model for epoch 1"):
        epochscope.open_run(run_dir).similar(images[3], epoch=1)


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def _png_path(tmp_path: Path, pixels: np.ndarray) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(_png(pixels))
    return path
