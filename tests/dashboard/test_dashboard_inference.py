"""Photo classification: decoding real-world files, preprocessing, top-5, limits, the API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dashboard import inference
from dashboard.classify.results import classify_uploads, data_url_bytes, percent, wordnet_path
from dashboard.inference import ImageError
from epochscope import ModelFile
from epochscope.predictions import softmax, top_k
from epochscope.preprocess import prepare
from epochscope.reader import model_epochs, read_classes
from epochscope.records import Preprocess
from tests.support import FAKE_CLASSES, make_fake_run

PRE = Preprocess(
    image_size=4, resize_size=6, interpolation="bilinear",
    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
)  # fmt: skip


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


# --- decoding ----------------------------------------------------------------------------------
def test_exif_rotation_is_applied() -> None:
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))  # blue left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = inference.decode_image(_encode(im, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)
    top, bottom = np.asarray(out)[2, 10], np.asarray(out)[37, 10]
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top
    assert bottom[0] > 200 and bottom[2] < 60


@pytest.mark.parametrize(
    ("mode", "fmt", "pixel", "expected"),
    [
        ("L", "PNG", 128, (128, 128, 128)),
        ("1", "PNG", 1, (255, 255, 255)),
        ("P", "PNG", None, (255, 0, 0)),
        ("CMYK", "JPEG", (0, 255, 255, 0), (255, 0, 0)),
        ("RGBA", "PNG", (0, 0, 0, 0), (255, 255, 255)),  # transparent -> white, not black
        ("LA", "PNG", (0, 128), (127, 127, 127)),
        ("I;16", "PNG", 65535, (255, 255, 255)),  # 16-bit: scaled, not clipped to 255
        ("I;16", "PNG", 32896, (128, 128, 128)),
        ("RGB", "WEBP", (0, 0, 255), (0, 0, 255)),
    ],
)
def test_any_mode_becomes_rgb(mode, fmt, pixel, expected) -> None:
    if mode == "P":
        im = Image.new("RGB", (8, 8), (255, 0, 0)).convert("P")
    else:
        im = Image.new(mode, (8, 8), pixel)
    out = inference.decode_image(_encode(im, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert out.mode == "RGB" and out.size == (8, 8)
    np.testing.assert_allclose(np.asarray(out)[4, 4], expected, atol=3)


def test_palette_with_transparency_goes_over_white() -> None:
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0] * 256)
    out = inference.decode_image(_encode(im, "PNG", transparency=0))
    assert tuple(np.asarray(out)[0, 0]) == (255, 255, 255)


def test_heic_when_supported() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("encoders", {}).get("HEVC"):
        pytest.skip("no HEVC encoder in this pillow-heif build")
    data = _encode(Image.new("RGB", (16, 16), (0, 200, 0)), "HEIF", quality=95)
    out = inference.decode_image(data)
    assert out.size == (16, 16) and np.asarray(out)[8, 8][1] > 150


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"%PDF-1.4 this is not an image\n" * 10, 415, "not an image"),
        (_encode(Image.new("RGB", (64, 64)), "PNG")[:-40], 422, "truncated or damaged"),
        (_encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")[:200], 422, "truncated"),
    ],
)
def test_bad_files_give_clear_errors(data, status, message) -> None:
    with pytest.raises(ImageError, match=message) as err:
        inference.decode_image(data)
    assert err.value.status == status


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 1-bit PNG of 20000 x 20000: a few KB on disk, 400 megapixels when decoded
    bomb = _encode(Image.new("1", (20000, 20000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="megapixel limit") as err:
        inference.decode_image(bomb, max_pixels=50_000_000)
    assert err.value.status == 413


def test_over_the_size_limit() -> None:
    data = _encode(Image.new("RGB", (64, 64)), "PNG")
    with pytest.raises(ImageError, match=r"over the .* limit") as err:
        inference.decode_image(data, max_bytes=len(data) - 1)
    assert err.value.status == 413
    assert inference.decode_image(data, max_bytes=len(data)).size == (64, 64)


# --- preprocessing and top-5 -------------------------------------------------------------------
def test_preprocess_resizes_shorter_side_crops_centre_and_normalises() -> None:
    arr = np.zeros((12, 24, 3), np.uint8)
    arr[:, 0:4, 0] = 255  # a red band at the left edge: cropped away
    arr[:, 11:13] = 255  # a white band in the middle: kept, in the middle
    x = prepare(Image.fromarray(arr), PRE)
    assert x.shape == (3, 4, 4) and x.dtype == np.float32
    # 12 x 24 -> 6 x 12 (shorter side 6), then the centre 4 x 4: columns 4..7 of 12
    black, half = (0 - 0.5) / 0.25, (0.5 - 0.5) / 0.25
    np.testing.assert_allclose(x[:, :, [0, 3]], black)
    np.testing.assert_allclose(x[:, :, [1, 2]], half, atol=0.02)  # 2 of 4 columns white


def test_preprocess_matches_the_runs_recipe_for_tall_images() -> None:
    im = Image.fromarray(np.full((30, 10, 3), 51, np.uint8))
    x = prepare(im, PRE)
    assert x.shape == (3, 4, 4)
    np.testing.assert_allclose(x, (0.2 - 0.5) / 0.25, atol=1e-5)


def test_softmax_and_top5() -> None:
    logits = np.array([[0.0, 3.0, 1.0, 2.0, -1.0, 5.0, 4.0]])
    p = softmax(logits)
    assert p.sum() == pytest.approx(1.0)
    idx, prob = top_k(p, 5)
    assert idx.tolist() == [[5, 6, 1, 3, 2]]
    assert prob[0, 0] == pytest.approx(np.exp(5) / np.exp(logits).sum())
    assert (np.diff(prob[0]) <= 0).all()


def test_preprocess_section_is_validated() -> None:
    with pytest.raises(ValueError, match="preprocess"):
        Preprocess.from_dict(None)
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess.from_dict({"image_size": 4, "resize_size": 6, "interpolation": "magic",
                              "mean": [0, 0, 0], "std": [1, 1, 1]})  # fmt: skip
    with pytest.raises(ValueError, match="std"):
        Preprocess.from_dict({"image_size": 4, "mean": [0, 0, 0], "std": [1, 0, 1]})
    with pytest.raises(ValueError, match="resize_size"):
        Preprocess.from_dict({"image_size": 8, "resize_size": 6})


# --- a hand-made run with real ONNX models ------------------------------------------------------
@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    return make_fake_run(tmp_path / "runs", "fake", epochs_done=2)


def test_classifier_on_a_run_each_file_on_its_own(fake_run: Path) -> None:
    photo = _encode(Image.new("RGB", (50, 30), (200, 120, 40)), "JPEG")
    clf = inference.Classifier.for_run(fake_run, 2)
    good, bad = clf.classify([photo, b"hello"])
    assert isinstance(bad, ImageError)
    assert len(good) == 5 and {"index", "wnid", "name", "probability"} <= set(good[0])
    probs = [r["probability"] for r in good]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert (good[0]["wnid"], good[0]["name"]) == FAKE_CLASSES[good[0]["index"]]
    # the same photo at another epoch (other weights) gets other probabilities
    other = inference.Classifier.for_run(fake_run, 1).classify([photo])[0]
    assert [r["probability"] for r in other] != probs


def test_sessions_are_cached_and_bounded(fake_run: Path) -> None:
    cache = inference.SessionCache(size=1)
    path1 = ModelFile.of(fake_run, 1)
    s1 = cache.get(path1)
    assert cache.get(path1) is s1
    cache.get(ModelFile.of(fake_run, 2))
    assert len(cache) == 1 and cache.get(path1) is not s1  # evicted, then loaded again


def test_page_helpers(fake_run: Path) -> None:
    import base64

    photo = _encode(Image.new("RGB", (300, 200), (10, 200, 40)), "PNG")
    url = "data:image/png;base64," + base64.b64encode(photo).decode()
    assert data_url_bytes(url) == photo
    clf = inference.Classifier.for_run(fake_run, 1)
    ok, err = classify_uploads(clf, [url, "data:text/plain;base64,aGVsbG8="])
    assert ok["thumb"].startswith("data:image/jpeg;base64,") and len(ok["top5"]) == 5
    assert "not an image" in err["error"]
    assert wordnet_path("n02123045")[:3] == ["tabby cat", "domestic cat", "cat"]
    assert wordnet_path("n02123045")[-1] == "entity"
    assert wordnet_path("my-folder") == []
    assert [percent(p) for p in (0.4567, 1.0, 0.0, 0.00012)] == [
        "45.7%",
        "100.0%",
        "0.0%",
        "0.012%",
    ]


# --- the scoring API (Flask test client; the real HTTP one runs in the browser tests) --------
@pytest.fixture
def client(fake_run: Path, monkeypatch):
    monkeypatch.setenv("RUNS_DIR", str(fake_run.parent))
    from dashboard.app import server

    return server.test_client()


def _post(client, data: bytes | None, **fields):
    form = {k: str(v) for k, v in fields.items()}
    if data is not None:
        form["image"] = (io.BytesIO(data), "photo.jpg")
    return client.post("/api/v1/classify", data=form, content_type="multipart/form-data")


def test_api_classifies_and_answers_errors_as_json(client) -> None:
    photo = _encode(Image.new("RGB", (64, 48), (90, 30, 200)), "JPEG")
    r = _post(client, photo, run="fake", epoch=1)
    assert r.status_code == 200
    body = r.get_json()
    assert body["run"] == "fake" and body["epoch"] == 1 and len(body["top5"]) == 5
    assert _post(client, photo).get_json()["epoch"] == 2  # default: the latest epoch
    cases = [
        (_post(client, b"not an image"), 415, "not an image"),
        (_post(client, None), 400, "'image'"),
        (_post(client, photo, run="../etc"), 400, "invalid run name"),
        (_post(client, photo, run="nope"), 404, "no run named"),
        (_post(client, photo, epoch=7), 404, "no model for epoch 7"),
        (_post(client, photo, epoch="x"), 400, "whole number"),
        (client.post("/api/v1/classify", data=json.dumps({})), 415, "multipart"),
    ]
    for resp, status, message in cases:
        assert resp.status_code == status, resp.get_json()
        assert message in resp.get_json()["error"]


def test_api_size_limit(client, monkeypatch) -> None:
    monkeypatch.setattr(inference, "MAX_UPLOAD_BYTES", 1000)
    big = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)),
                  "PNG")  # fmt: skip
    assert len(big) > 1000
    r = _post(client, big)
    assert r.status_code == 413 and "limit" in r.get_json()["error"]
    huge = b"\0" * 200_000  # over the limit plus the form allowance: refused before parsing
    r = _post(client, huge)
    assert r.status_code == 413


# --- the real tiny training run (PyTorch-exported ONNX), when the trainer is there -------------
@pytest.mark.slow
def test_tiny_run_models_classify_chelsea(tiny_run: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    photo = _encode(Image.fromarray(skimage_data.chelsea()), "JPEG")
    epochs = model_epochs(tiny_run)
    assert len(epochs) >= 2
    names = {wnid for _, wnid, _ in read_classes(tiny_run)}
    first = inference.Classifier.for_run(tiny_run, epochs[0]).classify([photo])[0]
    last = inference.Classifier.for_run(tiny_run, epochs[-1]).classify([photo])[0]
    assert len(first) == len(last) == 5 and {r["wnid"] for r in last} <= names
    assert [r["probability"] for r in first] != [r["probability"] for r in last]
