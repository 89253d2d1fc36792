"""Unit tests of the trainer's parts: models, schedules, run-directory writer, data, gathering."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from epochscope.lock import RunLockedError, lock_is_held
from epochscope.writer import RunWriter, atomic_write, truncate_partial_line
from trainer.data import (
    DataError,
    ImageDataset,
    RandomResizedCrop,
    discover,
    eval_pipeline,
    train_pipeline,
)
from trainer.distributed import order_by_index
from trainer.models import UnknownModelError, create_model, list_models, register_model
from trainer.schedules import Schedule


# --- models ---------------------------------------------------------------------------------------
def test_registry_has_the_seed_family():
    names = set(list_models())
    for depth in (18, 34, 50, 101, 152, 200):
        assert {f"resnet{depth}_v1", f"resnet{depth}_v2"} <= names
    assert "resnet269_v2" in names


@pytest.mark.parametrize(
    "name",
    [  # the deepest take seconds each to build: make test, not the edit loop
        pytest.param(n, marks=pytest.mark.slow) if int(n[6:].split("_")[0]) >= 152 else n
        for n in list_models()
    ],
)
def test_every_model_builds_and_classifies(name):
    model = create_model(name, num_classes=7, width=0.125).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)


def test_parameter_counts_match_the_reference_resnets():
    def count(name: str) -> int:
        return sum(p.numel() for p in create_model(name, num_classes=1000).parameters())

    # torchvision's resnet18 / resnet50 have 11,689,512 / 25,557,032 parameters
    assert count("resnet18_v1") == 11_689_512
    assert count("resnet50_v1") == 25_557_032
    assert abs(count("resnet18_v2") - 11_689_512) / 11_689_512 < 0.001


def test_width_scales_channels():
    narrow = create_model("resnet18_v2", num_classes=10, width=0.5)
    assert narrow.num_features == 256


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownModelError, match=r"resnet7.*resnet18_v2"):
        create_model("resnet7")


def test_register_refuses_overwrite():
    def resnet18_v2(**kw):  # same name as a registered model
        return torch.nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet18_v2)


# --- schedules ------------------------------------------------------------------------------------
def test_step_schedule_drops_at_milestones():
    s = Schedule("step", epochs=30, milestones=(10, 20), gamma=0.1)
    assert [s(e) for e in (0, 9.99, 10, 19.5, 20, 29)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_factor_schedule_multiplies_every_epoch():
    s = Schedule("factor", factor=0.9)
    assert [s(e) for e in (0, 0.5, 1, 2, 3.7)] == pytest.approx([1, 1, 0.9, 0.81, 0.729])


def test_cosine_with_warmup():
    s = Schedule("cosine", epochs=10, warmup_epochs=2, warmup_start=0.1, min_factor=0.0)
    assert s(0) == pytest.approx(0.1)
    assert s(1) == pytest.approx(0.55)  # half-way up the linear warm-up
    assert s(2) == pytest.approx(1.0)
    assert s(6) == pytest.approx(0.5)  # half-way down the cosine
    assert s(10) == pytest.approx(0.0, abs=1e-12)
    assert s(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="choose from"):
        Schedule("linear")


# --- run-directory writer -------------------------------------------------------------------------
def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write(tmp_path / "a" / "f.json", b"{}")
    atomic_write(tmp_path / "a" / "f.json", b"[1]")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.json"]
    assert (tmp_path / "a" / "f.json").read_bytes() == b"[1]"


def test_truncate_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert truncate_partial_line(path) == len(b'{"c": ')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert truncate_partial_line(path) == 0
    path.write_bytes(b'{"torn')
    truncate_partial_line(path)
    assert path.read_bytes() == b""


def test_writer_events_are_whole_lines(tmp_path):
    writer = RunWriter(tmp_path / "run")
    writer.acquire()
    try:
        (tmp_path / "run" / "metrics.jsonl").write_bytes(b'{"kind": "step"}\n{"kind": "ep')
        writer.close()
        writer.acquire()  # what a resumed trainer does first
        writer.event("status", 1, state="started")
        writer.event("epoch", 1, val_top5=np.float32(0.5))
        writer.write_npz("predictions/epoch-0001.npz", top5=np.zeros((3, 5), np.int16))
    finally:
        writer.close()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["kind"] for e in events] == ["step", "status", "epoch"]
    assert events[2]["val_top5"] == 0.5 and events[2]["epoch"] == 1 and "time" in events[2]
    with np.load(tmp_path / "run" / "predictions" / "epoch-0001.npz", allow_pickle=False) as z:
        assert z["top5"].shape == (3, 5)


def test_second_trainer_is_refused_and_dead_one_releases(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from epochscope.writer import RunWriter
            w = RunWriter({str(run)!r}); w.acquire(); print("held", flush=True); time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_is_held(run / "run.lock")
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid}\).*trainer stop run"):
            RunWriter(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's flock
    assert not lock_is_held(run / "run.lock")
    writer = RunWriter(run)
    writer.acquire()
    writer.close()


# --- data -----------------------------------------------------------------------------------------
def _jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


WNIDS = ("n01440764", "n02123045", "n04037443")


def test_imagenet_folders(tmp_path):
    for i, w in enumerate(WNIDS):
        for k in range(3):
            _jpeg(tmp_path / "train" / w / f"{w}_{k}.JPEG", (80 * i, 0, 0))
        _jpeg(tmp_path / "val" / w / f"v{k}.JPEG", (80 * i, 0, 0))
    (tmp_path / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    index = discover(tmp_path)
    assert index.layout == "imagenet-folders"
    assert index.classes == list(WNIDS)
    assert index.names[1].startswith("tabby")  # from the catalogue
    assert len(index.train) == 9 and len(index.val) == 3
    assert index.val[1] == (f"val/{WNIDS[1]}/v2.JPEG", 1)


def test_flat_val_with_loc_solution(tmp_path):
    for w in WNIDS:
        _jpeg(tmp_path / "train" / w / f"{w}_0.JPEG", (0, 0, 0))
    rows = ["ImageId,PredictionString"]
    for k, w in enumerate([WNIDS[2], WNIDS[0], WNIDS[1], WNIDS[2]], 1):
        name = f"ILSVRC2012_val_{k:08d}"
        _jpeg(tmp_path / "val" / f"{name}.JPEG", (0, 0, 0))
        rows.append(f"{name},{w} 1 2 30 20 {w} 3 4 10 10")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    index = discover(tmp_path)
    assert index.layout == "imagenet-flat-val"
    assert [label for _, label in index.val] == [2, 0, 1, 2]
    assert index.val[0][0] == "val/ILSVRC2012_val_00000001.JPEG"


def test_flat_val_without_labels_is_a_clear_error(tmp_path):
    _jpeg(tmp_path / "train" / WNIDS[0] / "a.JPEG", (0, 0, 0))
    _jpeg(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG", (0, 0, 0))
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv"):
        discover(tmp_path)


def test_generic_image_folder_is_split(tmp_path):
    for name in ("cats", "dogs"):
        for k in range(10):
            _jpeg(tmp_path / name / f"{k:02d}.png", (k, k, k))
    index = discover(tmp_path, val_fraction=0.2)
    assert index.layout == "image-folder-split"
    assert index.classes == index.names == ["cats", "dogs"]
    assert len(index.val) == 4 and len(index.train) == 16
    assert not set(index.val) & set(index.train)


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "no-images"])
def test_unusable_data_folders(tmp_path, kind):
    root = tmp_path / "data"
    if kind == "file":
        root.write_text("x")
    elif kind == "empty":
        root.mkdir()
    elif kind == "no-images":
        (root / "train" / "a").mkdir(parents=True)
        (root / "train" / "a" / "readme.txt").write_text("x")
    with pytest.raises(DataError):
        discover(root)


def test_corrupt_image_is_flagged_not_raised(tmp_path):
    good, bad, fake = tmp_path / "good.JPEG", tmp_path / "bad.JPEG", tmp_path / "fake.JPEG"
    _jpeg(good, (200, 10, 10), (64, 48))
    bad.write_bytes(good.read_bytes()[:40])  # a truncated download
    fake.write_text("<html>not a picture</html>")
    ds = ImageDataset(tmp_path, [("good.JPEG", 0), ("bad.JPEG", 1), ("fake.JPEG", 2)],
                      eval_pipeline(32))  # fmt: skip
    items = [ds[i] for i in range(3)]
    assert [ok for *_, ok in items] == [True, False, False]
    assert all(img.shape == (3, 32, 32) and img.dtype == torch.uint8 for img, *_ in items)
    assert items[0][0][0].float().mean() > 150  # the red survived


def test_pipelines_give_the_requested_size(tmp_path):
    _jpeg(tmp_path / "wide.JPEG", (1, 2, 3), (300, 120))
    assert eval_pipeline(32)(tmp_path / "wide.JPEG").shape == (3, 32, 32)
    assert train_pipeline(32, 0.35)(tmp_path / "wide.JPEG").shape == (3, 32, 32)
    crop = RandomResizedCrop(16, scale=(0.5, 1.0))
    assert crop(Image.new("RGB", (5, 200))).size == (16, 16)


# --- distributed gathering ------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "world"), [(10, 3), (7, 2), (8, 4), (1, 2)])
def test_gathered_predictions_drop_sampler_padding(n, world):
    ds = list(range(n))
    parts = [list(DistributedSampler(ds, num_replicas=world, rank=r, shuffle=False))
             for r in range(world)]  # fmt: skip
    indices = np.concatenate(parts)
    assert len(indices) >= n  # padded to a multiple of the world size
    values = indices * 10  # what each rank computed for its images
    out = order_by_index(indices, n, value=values)
    assert out["value"].tolist() == [i * 10 for i in range(n)]


def test_gather_detects_missing_images():
    with pytest.raises(RuntimeError, match="2 of 3"):
        order_by_index(np.array([0, 2, 2]), 3, v=np.zeros(3))


def test_tmp_names_are_hidden(tmp_path):
    # readers skip dot-files; a killed writer's temporary never looks like a real file
    atomic_write(tmp_path / "x.npz", b"1")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert os.listdir(tmp_path) == ["x.npz"]


def test_image_size_is_limited_to_what_a_classifier_of_the_run_reads() -> None:
    """run.json's preprocess sizes are at most 1024 px (epochscope.records): a trainer refuses
    an --image-size whose resize would exceed it before it writes anything."""
    from trainer.options import UsageError, parse_args, validate

    args, explicit = parse_args(["--data", "d", "--name", "n", "--image-size", "896"])
    validate(args, explicit, "pytorch", ["resnet18_v2"])
    args, explicit = parse_args(["--data", "d", "--name", "n", "--image-size", "897"])
    with pytest.raises(UsageError, match="--image-size must be at most 896"):
        validate(args, explicit, "pytorch", ["resnet18_v2"])


def test_embeddings_on_the_device_are_numpys() -> None:
    """trainer.embedding.embed_on (torch, the GPU's path; here on the CPU) stores what
    epochscope.embeddings.embed does: the same projection and vectors."""
    import numpy as np
    import torch

    from epochscope.embeddings import embed
    from trainer.embedding import embed_on

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (10, 300))
    x = np.maximum(centres[np.arange(9000) % 10] + rng.normal(0, 1, (9000, 300)), 0)
    want, got = embed(x.astype(np.float32)), embed_on(x.astype(np.float32), torch.device("cpu"))
    assert got.vectors.dtype == np.float16 and got.vectors.shape == want.vectors.shape
    np.testing.assert_allclose(got.projection.mean, want.projection.mean, atol=1e-5)
    # the leading components (well separated eigenvalues) agree, signs included
    np.testing.assert_allclose(got.projection.components[:9], want.projection.components[:9],
                               atol=1e-3)  # fmt: skip
    np.testing.assert_allclose(got.vectors[:, :9], want.vectors[:, :9], atol=0.05)


def test_evaluate_captures_the_pooled_features_only_when_asked() -> None:
    """evaluate(features=True) returns the ResNet's pooled features (what fc takes) per image,
    rows as the logits'; --no-embeddings (features=False) returns none; logits are the same."""
    import torch

    from trainer.data import Normalize
    from trainer.models import create_model
    from trainer.train import evaluate

    torch.manual_seed(0)
    model = create_model("resnet18_v2", num_classes=5, width=0.25).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    batches = [
        (images[:4], torch.tensor([0, 1, 2, 3]), torch.arange(4), torch.ones(4, dtype=bool)),
        (images[4:], torch.tensor([4, 0]), torch.arange(4, 6), torch.ones(2, dtype=bool)),
    ]
    normalize = Normalize(torch.device("cpu"))
    with_f = evaluate(model, batches, normalize, amp=False, progress=False, features=True)
    without = evaluate(model, batches, normalize, amp=False, progress=False, features=False)
    assert "features" not in without
    assert np.array_equal(with_f["top5"], without["top5"])
    with torch.no_grad():
        pooled = torch.flatten(model.pool(model.forward_features(normalize(images))), 1)
    assert with_f["features"].shape == (6, pooled.shape[1])
    np.testing.assert_allclose(with_f["features"].astype(np.float32), pooled.numpy(), rtol=2e-3,
                               atol=2e-3)  # fmt: skip
