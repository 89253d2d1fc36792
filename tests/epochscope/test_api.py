"""epochscope.init: the public logging API, on real run directories read back by the readers
the dashboard uses (no mocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader
from epochscope.lock import RunLockedError
from epochscope.predictions import accuracy, top5_from_logits
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
CLASSES = [f"class{i}" for i in range(7)]


def _logits(n: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, c)).astype(np.float32)


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_numpy_loop_writes_a_run_the_readers_accept(tmp_path: Path) -> None:
    labels = np.arange(30) % 7
    with epochscope.init(
        "np-run", tmp_path, classes=CLASSES, val_labels=labels, hparams={"lr": 0.1},
        image_size=32, epochs=2, steps_per_epoch=3,
    ) as run:  # fmt: skip
        for epoch in (1, 2):
            for k in range(3):
                run.log_step((epoch - 1) * 3 + k + 1, loss=2.0 - k * 0.1, lr=0.1)
            logits = _logits(30, 7, epoch)
            run.log_predictions(epoch, logits)
            event = run.log_epoch(epoch, train_loss=1.5 / epoch)
    run_dir = tmp_path / "np-run"
    info = reader.read_run_info(run_dir)
    assert (info.engine, info.epochs, info.data.num_val, info.data.num_classes) == (
        "epochscope-api", 2, 30, 7
    )  # fmt: skip
    assert info.preprocess.image_size == 32 and info.hparams == {"lr": 0.1}
    assert [n for _, _, n in reader.read_classes(run_dir)] == CLASSES
    got_labels, _ = reader.read_val_index(run_dir)
    assert np.array_equal(got_labels, labels)
    top5, prob = reader.load_predictions(run_dir, 2, num_rows=30, num_classes=7)
    want_top5, want_prob = top5_from_logits(_logits(30, 7, 2))
    assert np.array_equal(top5, want_top5) and np.allclose(prob, want_prob)
    # the accuracies written are those of the logged logits
    top1, top5_acc = accuracy(want_top5, labels)
    assert event["val_top1"] == pytest.approx(top1) and event["val_top5"] == pytest.approx(top5_acc)
    z = _logits(30, 7, 2).astype(np.float64)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(30), labels]
    assert event["val_loss"] == pytest.approx(nll.mean(), rel=1e-5) and event["epoch_seconds"] >= 0
    events = _events(run_dir)
    assert [e["state"] for e in events if e["kind"] == "status"] == ["started", "finished"]
    steps = [e for e in events if e["kind"] == "step"]
    assert [(e["epoch"], e["epoch_step"], e["steps_per_epoch"]) for e in steps[:4]] == [
        (1, 1, 3), (1, 2, 3), (1, 3, 3), (2, 1, 3)
    ]  # fmt: skip
    summary = epochscope.open_run(run_dir).summary
    assert (summary.state, summary.epochs_done, summary.engine) == ("finished", 2, "epochscope-api")
    assert not (run_dir / "run.lock").exists() or not reader.lock_held(run_dir)


def test_import_epochscope_and_a_numpy_run_import_no_framework(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, numpy as np, epochscope
        with epochscope.init("x", {str(tmp_path)!r}, classes=["a", "b"], val_labels=[0, 1]) as r:
            r.log_predictions(1, np.eye(2))
            r.log_epoch(1)
        heavy = [m for m in ("torch", "PIL", "pandas", "lightning", "transformers", "onnx")
                 if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_input_gets_errors_naming_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid run name"):
        epochscope.init("../up", tmp_path, classes=CLASSES)
    with pytest.raises(ValueError, match="classes"):
        epochscope.init("r", tmp_path, classes=["a", "a"])
    with pytest.raises(ValueError, match="val_labels"):
        epochscope.init("r", tmp_path, classes=CLASSES, val_labels=[0, 9])
    run = epochscope.init("r", tmp_path, classes=CLASSES, val_labels=np.arange(10) % 7)
    with pytest.raises(ValueError, match=r"logits must be \[N_val, 7\]"):
        run.log_predictions(1, np.zeros((10, 6)))
    with pytest.raises(ValueError, match="logits has 9 rows"):
        run.log_predictions(1, np.zeros((9, 7)))
    with pytest.raises(ValueError, match="NaN"):
        run.log_predictions(1, np.full((10, 7), np.nan))
    run.log_predictions(1, np.zeros((10, 7)))
    with pytest.raises(ValueError, match="already logged"):
        run.log_predictions(1, np.zeros((10, 7)))
    with pytest.raises(ValueError, match="val_top1 must be a fraction"):
        run.log_epoch(1, val_top1=50.0)
    run.log_epoch(1)
    with pytest.raises(ValueError, match="epoch 1 was already logged"):
        run.log_epoch(1)
    with pytest.raises(ValueError, match="epoch"):
        run.log_epoch(0)
    with pytest.raises(ValueError, match="train_loss must be a number"):
        run.log_epoch(2, train_loss="low")
    with pytest.raises(ValueError, match=r"model must be a torch\.nn\.Module or ONNX bytes"):
        run.log_model(2, object())
    run.finish()
    with pytest.raises(RuntimeError, match="finished"):
        run.log_epoch(2)
    # the run is whole after all those refusals
    assert list(reader.epoch_table(_events(tmp_path / "r"))) == [1]
    with pytest.raises(FileExistsError, match="resume=True"):
        epochscope.init("r", tmp_path, classes=CLASSES)
    with pytest.raises(ValueError, match="classes do not match"):
        epochscope.init("r", tmp_path, classes=CLASSES[:5], resume=True)


def test_resume_continues_after_the_last_epoch(tmp_path: Path) -> None:
    labels = np.arange(14) % 7
    with epochscope.init("r", tmp_path, classes=CLASSES, val_labels=labels) as run:
        run.log_predictions(1, _logits(14, 7, 0))
        run.log_epoch(1)
    with epochscope.init("r", tmp_path, classes=CLASSES, resume=True) as run:
        assert run.last_epoch == 1 and np.array_equal(run.labels, labels)
        with pytest.raises(ValueError, match="already logged"):
            run.log_epoch(1)
        run.log_predictions(2, _logits(14, 7, 1))
        run.log_epoch(2)
    states = [e["state"] for e in _events(tmp_path / "r") if e["kind"] == "status"]
    assert states == ["started", "finished", "resumed", "finished"]
    assert reader.prediction_epochs(tmp_path / "r") == [1, 2]


def test_a_live_writer_holds_the_run(tmp_path: Path) -> None:
    # another process keeps the run open; init here must refuse, naming the run
    code = textwrap.dedent(f"""
        import sys, time, epochscope
        run = epochscope.init("held", {str(tmp_path)!r}, classes=["a", "b"])
        print("ready", flush=True)
        sys.stdin.readline()
        run.finish()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(
            RunLockedError, match=rf"name: run 'held' is being written.*pid {proc.pid}"
        ):
            epochscope.init("held", tmp_path, classes=["a", "b"], resume=True)
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    with epochscope.init("held", tmp_path, classes=["a", "b"], resume=True) as run:
        assert run.last_epoch == 0  # free once the other writer finished


def test_an_exception_in_the_with_block_marks_the_run_failed(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):  # noqa: SIM117
        with epochscope.init("boom", tmp_path, classes=CLASSES, val_labels=[0, 1]):
            1 / 0  # noqa: B018
    status = reader.last_status(_events(tmp_path / "boom"))
    assert status["state"] == "failed" and status["error"].startswith("ZeroDivisionError")
    assert "1 / 0" in status["traceback"]
    summary = epochscope.open_run(tmp_path / "boom").summary
    assert summary.state == "failed"


def test_labels_can_come_with_the_first_predictions(tmp_path: Path) -> None:
    with epochscope.init("late", tmp_path, classes=CLASSES) as run:
        with pytest.raises(ValueError, match="labels"):
            run.log_predictions(1, _logits(5, 7, 0))
        run.log_predictions(1, _logits(5, 7, 0), labels=[0, 1, 2, 3, 4])
        with pytest.raises(ValueError, match="labels differ"):
            run.log_predictions(2, _logits(5, 7, 0), labels=[0, 0, 0, 0, 0])
        run.log_epoch(1)
    labels, paths = reader.read_val_index(tmp_path / "late")
    assert labels.tolist() == [0, 1, 2, 3, 4] and paths == [""] * 5


def test_image_paths_are_stored_relative_to_their_root(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "data" / "val"
    files = []
    for i, cls in enumerate(["a", "b"]):
        (root / cls).mkdir(parents=True)
        p = root / cls / "0.png"
        Image.new("RGB", (8, 8), (200 * i, 0, 0)).save(p)
        files.append((str(p), i))
    with epochscope.init("files", tmp_path / "runs", classes=["a", "b"], val_images=files) as run:
        run.log_predictions(1, np.eye(2))
        run.log_epoch(1)
    run_dir = tmp_path / "runs" / "files"
    assert reader.read_run_info(run_dir).data.root == str(root.resolve())
    labels, paths = reader.read_val_index(run_dir)
    assert labels.tolist() == [0, 1] and paths == ["a/0.png", "b/0.png"]


def test_array_images_become_thumbnails_the_drilldown_shows(tmp_path: Path) -> None:
    import base64
    import io

    from PIL import Image

    from dashboard.confusion import data, service

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(12, 40, 40, 3), dtype=np.uint8)
    images[3] = [255, 0, 0]  # a red square at row 3
    labels = np.arange(12) % 3
    logits = np.zeros((12, 3))
    logits[np.arange(12), (labels + 1) % 3] = 5.0  # every image guessed as the next class
    with epochscope.init(
        "arrays", tmp_path, classes=["a", "b", "c"], val_images=images, val_labels=labels
    ) as run:
        run.log_predictions(1, logits)
        run.log_epoch(1)
    run_dir = tmp_path / "arrays"
    assert (run_dir / "thumbnails.bin").stat().st_size < 12 * 4000
    assert reader.read_run_info(run_dir).data.root == ""
    data.clear()
    shown = service.drill(data.run(run_dir), 1, "top1", true=0, pred=1)
    assert [im.row for im in shown] == [0, 3, 6, 9]
    uri = shown[1].thumbnail
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    r, g, b = np.asarray(im.convert("RGB"), dtype=float).mean(axis=(0, 1))
    assert im.size == (40, 40) and r > 200 and g < 60 and b < 60


def test_thumbnail_file_refuses_damage(tmp_path: Path) -> None:
    from epochscope import thumbnails

    images = np.zeros((3, 100, 50, 3), np.uint8)
    blob = thumbnails.thumbnails_bytes(thumbnails.as_images(images))
    (tmp_path / "thumbnails.bin").write_bytes(blob)
    assert thumbnails.thumbnail_count(tmp_path) == 3
    first = thumbnails.read_thumbnail(tmp_path, 0)
    assert first[:2] == b"\xff\xd8"
    assert thumbnails.read_thumbnail(tmp_path, 3) is None
    assert thumbnails.read_thumbnail(tmp_path, -1) is None
    (tmp_path / "thumbnails.bin").write_bytes(blob[: len(blob) // 2])  # torn
    assert thumbnails.read_thumbnail(tmp_path, 2) is None
    (tmp_path / "thumbnails.bin").write_bytes(b"not a thumbnail file at all")
    assert thumbnails.read_thumbnail(tmp_path, 0) is None
    with pytest.raises(ValueError, match="val_images"):
        thumbnails.as_images(np.zeros((3, 4, 4, 2)))


@pytest.mark.slow
def test_torch_model_and_tensors_are_logged_and_classify(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from dashboard.inference import Classifier

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )  # fmt: skip
    x = torch.rand(6, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    with epochscope.init("torch", tmp_path, classes=["a", "b", "c"], image_size=16,
                         resize_size=16, mean=(0, 0, 0), std=(1, 1, 1)) as run:  # fmt: skip
        with torch.no_grad():
            logits = model(x)
        run.log_predictions(1, logits, labels=labels)
        run.log_model(1, model)
        run.log_epoch(1, train_loss=torch.tensor(0.5))
        with pytest.raises(ValueError, match=r"logits \[batch, 3\]"):
            run.log_model(2, torch.nn.Flatten())
        with pytest.raises(ValueError, match="ONNX"):
            run.log_model(2, b"\x00\x01 not onnx")
    onnx_path = tmp_path / "torch" / "models" / "epoch-0001.onnx"
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    (out,) = sess.run(["logits"], {"input": x.numpy()})  # a batch of 6: the batch is dynamic
    assert np.allclose(out, logits.numpy(), atol=1e-5)
    # the dashboard's classifier takes the model as it takes the trainer's
    session = Classifier.for_run(tmp_path / "torch", 1)
    top = session.predict(np.zeros((1, 3, 16, 16), np.float32))
    assert len(top[0]) == 3 and {t["name"] for t in top[0]} == {"a", "b", "c"}


def test_device_events_on_request(tmp_path: Path) -> None:
    import time

    pytest.importorskip("psutil")
    with epochscope.init("dev", tmp_path, classes=CLASSES, devices="cpu",
                         device_interval=0.2) as run:  # fmt: skip
        time.sleep(1.6)
        assert run.is_writer
    devices = [e for e in _events(tmp_path / "dev") if e["kind"] == "device"]
    assert devices and devices[0]["device_kind"] == "cpu" and devices[0]["mem_used_mib"] > 0
    assert reader.read_run_info(tmp_path / "dev").devices[0]["kind"] == "cpu"


DIST_SCRIPT = """
import os, sys
import numpy as np
import torch, torch.distributed as dist
from torch.utils.data import DistributedSampler
import epochscope

dist.init_process_group("gloo")
rank = dist.get_rank()
n, c = 11, 4  # 11 images over 2 ranks: the sampler pads one repeat
all_logits = np.random.default_rng(0).normal(size=(n, c)).astype(np.float32)
labels = np.arange(n) % c
sampler = DistributedSampler(range(n), shuffle=True, seed=3)
idx = np.array(list(sampler))
run = epochscope.init("ddp", sys.argv[1], classes=list("abcd"), val_labels=labels)
assert run.is_writer == (rank == 0)
run.log_predictions(1, torch.from_numpy(all_logits[idx]), indices=torch.from_numpy(idx))
run.log_epoch(1)
run.finish()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_under_torch_distributed_rank_zero_gathers_and_writes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    script = tmp_path / "ddp.py"
    script.write_text(DIST_SCRIPT)
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
          "--master-port", str(free_port()), str(script), str(runs)],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    all_logits = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    top5, _ = reader.load_predictions(runs / "ddp", 1, num_rows=11, num_classes=4)
    assert np.array_equal(top5, top5_from_logits(all_logits)[0])
    assert reader.read_run_info(runs / "ddp").world_size == 2
    assert len([e for e in _events(runs / "ddp") if e["kind"] == "epoch"]) == 1


# --- fails early, numbers epochs as the caller does, agrees with the user's model ---------------
def test_paths_without_labels_are_refused_at_init(tmp_path: Path) -> None:
    from PIL import Image

    files = []
    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "val" / cls / "0.png")
        files.append(str(tmp_path / "val" / cls / "0.png"))
    with pytest.raises(ValueError, match=r"val_images: paths without labels.*val_labels="):
        epochscope.init("nolabels", tmp_path / "runs", classes=["a", "b"], val_images=files)
    assert not (tmp_path / "runs" / "nolabels").exists()
    # with the labels beside them, or said to come later, they are taken
    epochscope.init("withlabels", tmp_path / "runs", classes=["a", "b"], val_images=files,
                    val_labels=[0, 1]).finish()  # fmt: skip
    with epochscope.init("later", tmp_path / "runs", classes=["a", "b"], val_images=files,
                         labels_later=True) as run:  # fmt: skip
        run.log_predictions(1, np.eye(2), labels=[0, 1])
        run.log_epoch(1)
    assert reader.read_val_index(tmp_path / "runs" / "later")[1] == ["a/0.png", "b/0.png"]


def test_epochs_counted_from_zero_are_said_at_init(tmp_path: Path) -> None:
    labels = np.arange(10) % 7
    run = epochscope.init("zero", tmp_path, classes=CLASSES, val_labels=labels)
    with pytest.raises(ValueError, match="epoch_base=0"):
        run.log_step(1, loss=1.0, epoch=0)
    run.finish()
    with epochscope.init("zero0", tmp_path, classes=CLASSES, val_labels=labels, epochs=2,
                         epoch_base=0) as run:  # fmt: skip
        for epoch in (0, 1):
            run.log_predictions(epoch, _logits(10, 7, epoch))
            run.log_epoch(epoch, train_loss=1.0)
        with pytest.raises(ValueError, match="epoch 1 was already logged"):
            run.log_epoch(1)
    assert list(reader.epoch_table(_events(tmp_path / "zero0"))) == [1, 2]
    assert reader.prediction_epochs(tmp_path / "zero0") == [1, 2]
    assert reader.read_run_info(tmp_path / "zero0").epochs == 2


def test_start_over_or_a_fresh_name_instead_of_rm_rf(tmp_path: Path) -> None:
    labels = np.arange(10) % 7
    for _ in range(2):
        with epochscope.init("again", tmp_path, classes=CLASSES, val_labels=labels,
                             if_exists="replace") as run:  # fmt: skip
            run.log_predictions(1, _logits(10, 7, 1))
            run.log_epoch(1)
    states = [e["state"] for e in _events(tmp_path / "again") if e["kind"] == "status"]
    assert states == ["started", "finished"]  # the first run is gone, not appended to
    names = []
    for _ in range(2):
        with epochscope.init("again", tmp_path, classes=CLASSES, if_exists="new") as run:
            names.append(run.name)
    assert names == ["again-2", "again-3"]
    with pytest.raises(ValueError, match="if_exists must be one of"):
        epochscope.init("again", tmp_path, classes=CLASSES, if_exists="overwrite")


def _pixel_model_run(tmp_path: Path, name: str, **kw) -> list[str]:
    """32 px photos and a model that reads every pixel where it is (a linear layer on the
    flattened image), logged as a user would: returns the warnings."""
    import warnings

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(40) % 10
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.tensor(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2), dtype=torch.float32)
    with torch.no_grad():
        logits = model(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with epochscope.init(name, tmp_path, classes=[f"c{i}" for i in range(10)],
                             val_images=images, val_labels=labels, image_size=32,
                             epochs=2, **kw) as run:  # fmt: skip
            for epoch in (1, 2):
                run.log_predictions(epoch, logits)
                run.log_model(epoch, model)
                run.log_epoch(epoch)
    assert (tmp_path / name / "models" / "epoch-0002.onnx").is_file()  # exported off-thread
    return [
        str(w.message) for w in caught if issubclass(w.category, epochscope.api.EpochscopeWarning)
    ]


def test_model_self_check_warns_for_the_default_resize_of_32px_photos(tmp_path: Path) -> None:
    warned = _pixel_model_run(tmp_path, "r36")
    assert len(warned) == 1  # the first log_model only
    assert "resize_size=36" in warned[0] and "pass resize_size=32 to epochscope.init" in warned[0]
    recorded = [e for e in _events(tmp_path / "r36") if e["kind"] == "warning"]
    assert len(recorded) == 1 and "resize_size=32" in recorded[0]["message"]


def test_model_self_check_is_silent_when_the_preprocessing_matches(tmp_path: Path) -> None:
    assert _pixel_model_run(tmp_path, "r32", resize_size=32) == []


def test_model_self_check_warns_again_at_the_epoch_the_model_drifts(tmp_path: Path) -> None:
    """Epoch 1 agrees; from epoch 2 the user's validation pipeline normalises with 0.5/0.5 while
    the run still says ImageNet's mean/std: warned at 2, not again at 3, again at 5 after 4
    agreed."""
    import warnings

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    images = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))

    def logits(mean: float | np.ndarray, std: float | np.ndarray) -> object:
        x = ((images / 255.0 - mean) / std).transpose(0, 3, 1, 2)
        with torch.no_grad():
            return model(torch.tensor(x, dtype=torch.float32))

    right = logits(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
    drifted = logits(0.5, 0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with epochscope.init("drift", tmp_path, classes=[f"c{i}" for i in range(10)],
                             val_images=images, val_labels=np.arange(40) % 10, image_size=32,
                             resize_size=32, epochs=5) as run:  # fmt: skip
            for epoch in range(1, 6):
                run.log_predictions(epoch, drifted if epoch in (2, 3, 5) else right)
                run.log_model(epoch, model)
                run.log_epoch(epoch)
    warned = [str(w.message) for w in caught if w.category is epochscope.api.EpochscopeWarning]
    assert [m.split(":")[0] for m in warned] == [
        "epoch 2 (an earlier epoch's model agreed)",
        "epoch 5 (an earlier epoch's model agreed)",
    ]
    assert "With mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5) it agrees on all" in warned[0]
    checks = [(c["epoch"], c["agree"] == c["checked"], c["warned"]) for c in run.self_checks]
    assert checks == [(1, True, False), (2, False, True), (3, False, False), (4, True, False),
                      (5, False, True)]  # fmt: skip
    recorded = [e for e in _events(tmp_path / "drift") if e["kind"] == "warning"]
    assert [e["epoch"] for e in recorded] == [2, 5]


def test_a_writer_that_died_reads_as_crashed(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import os, epochscope
        run = epochscope.init("dies", {str(tmp_path)!r}, classes=["a", "b"], val_labels=[0, 1])
        run.log_predictions(1, [[1.0, 0.0], [0.0, 1.0]])
        run.log_epoch(1)
        os._exit(1)  # as a kill or a crash of the interpreter: no status written
    """)
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, timeout=120)
    assert epochscope.open_run(tmp_path / "dies").summary.state == "crashed"
    assert reader.run_state(tmp_path / "dies", _events(tmp_path / "dies")) == "crashed"
