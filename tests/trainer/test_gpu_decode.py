"""The GPU decode path's CPU side (what CI can run): which JPEGs nvJPEG would take, the
automatic choice and its reason, the Pillow fallback (also when the GPU decoder is chosen but
cannot run), augmentation of decoded tensors, and the loader that chains them."""

from __future__ import annotations

import argparse
import io
import random

import pytest
import torch
from PIL import Image

from trainer import fastdata, gpu_decode, recipe
from trainer.gpu_decode import BatchDecoder, DecodeChoice, jpeg_kind


def _encode(mode: str = "RGB", fmt: str = "JPEG", size=(48, 40), **kw) -> bytes:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize(size).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("blob,kind", [
    (lambda: _encode(), "baseline"),
    (lambda: _encode("L"), "baseline"),
    (lambda: _encode(progressive=True), "progressive"),
    (lambda: _encode("CMYK"), "cmyk"),
    (lambda: _encode(fmt="PNG"), "not-jpeg"),
    (lambda: b"\xff\xd8\xff\xe0", "other-jpeg"),
    (lambda: b"", "not-jpeg"),
])  # fmt: skip
def test_jpeg_kind_reads_the_frame_header(blob, kind):
    assert jpeg_kind(blob()) == kind


def test_without_cuda_auto_chooses_the_cpu_and_says_why():
    choice = gpu_decode.choose("auto", torch.device("cpu"))
    assert choice == DecodeChoice("cpu", "no CUDA device") and not choice.gpu
    assert gpu_decode.choose("cpu", torch.device("cpu")).reason == "--decode cpu"
    with pytest.raises(ValueError, match="--decode gpu asked for, but no CUDA device"):
        gpu_decode.choose("gpu", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown --decode"):
        gpu_decode.choose("dali", torch.device("cpu"))


def test_fallback_decodes_what_nvjpeg_refuses_and_flags_the_unreadable():
    blobs = [_encode(), _encode(progressive=True), _encode("CMYK"), _encode(fmt="PNG"), b"junk"]
    # chosen as if a GPU were there: on this machine the GPU call fails (no CUDA, or no
    # torchvision) and the CPU decodes the batch instead of the run failing
    decoder = BatchDecoder(torch.device("cpu"), DecodeChoice("nvjpeg", "test"))
    images, ok = decoder.decode(blobs)
    assert ok == [True, True, True, True, False] and images[4] is None
    for img in images[:4]:
        assert img.dtype == torch.uint8 and img.shape == (3, 40, 48)
    assert decoder.counts == {"gpu": 0, "cpu": 4, "failed": 1}
    # the CMYK JPEG comes out as RGB close to the RGB one's colours
    assert (images[2].float() - images[0].float()).abs().mean() < 40


def test_resized_crop_flip_on_decoded_tensors():
    imgs = [torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8), None]
    out = gpu_decode.resized_crop_flip(imgs, 32, (0.25, 1.0), random.Random(0))
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    assert out[1].eq(0).all() and out[0].float().std() > 0
    box = gpu_decode.resized_crop_box(40, 60, (0.25, 1.0), random.Random(1))
    top, left, h, w = box
    assert 0 <= top <= 40 - h and 0 <= left <= 60 - w and h * w >= 0.2 * 40 * 60


def test_gpu_loader_chain_on_cpu(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            (tmp_path / cls / f"{i}.jpg").write_bytes(_encode(progressive=i == 0, size=(80, 60)))
    index = fastdata.discover_any(tmp_path, 0.34)
    sampler = torch.utils.data.DistributedSampler(range(len(index.train)), 1, 0, seed=0)
    raw = torch.utils.data.DataLoader(fastdata.BytesDataset(index, "train"), batch_size=4,
                                      sampler=sampler, collate_fn=gpu_decode.collate_bytes,
                                      drop_last=True)  # fmt: skip
    decoder = BatchDecoder(torch.device("cpu"), DecodeChoice("cpu", "test"))
    loader = gpu_decode.GpuJpegLoader(raw, decoder, 32, 0.25)
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    x, y, idx, ok = batches[0]
    assert x.shape == (4, 3, 32, 32) and ok.all() and len(y) == len(idx) == 4
    assert decoder.counts["cpu"] == 8


def test_the_trainer_logs_the_cpu_decode_choice(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            (tmp_path / cls / f"{i}.jpg").write_bytes(_encode(size=(80, 60)))
    args = argparse.Namespace(recipe="auto", image_size=32, epochs=2, batch_size=2, stem="auto",
                              augment="resized-crop", nesterov=None, norm_decay=None, lr=None,
                              weight_decay=None, label_smoothing=None, lr_schedule=None,
                              warmup_epochs=None, min_crop_scale=None, seed=0, workers=0,
                              cache="auto", decode="auto")  # fmt: skip
    recipe.apply(args, {"augment"})
    index = fastdata.discover_any(tmp_path, 0.5)
    loaders = fastdata.build_loaders(index, args, world=1, rank=0, batch=2, pin_memory=False,
                                     device=torch.device("cpu"))  # fmt: skip
    assert loaders.plan.loader == "jpeg"
    assert loaders.plan.reason.endswith("; CPU decode: no CUDA device")
