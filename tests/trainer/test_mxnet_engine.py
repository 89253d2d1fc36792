"""The MXNet engine (issue 9): dispatch, parity with the PyTorch engine's data and options, and a
tiny real run read by the dashboard; its validation embeddings and ONNX ``embedding`` output
(issue 24). Runs need .venv-mxnet (``make install-mxnet``)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, needs_mxnet, run_cli
from tests.support import check_train_stats, read_events, read_tsv
from trainer.mxnet_engine import data as mxdata
from trainer.mxnet_engine.gpus import DeviceError, check_gpu_support
from trainer.mxnet_engine.launch import engine_of, strip_engine

EPOCHS = 2
RUN_ARGS = (
    "--engine", "mxnet", "--arch", "resnet18_v2", "--width", "0.25", "--epochs", str(EPOCHS),
    "--batch-size", "32", "--image-size", "32", "--lr", "0.1", "--seed", "0", "--workers", "1",
)  # fmt: skip


# --- no MXNet needed ----------------------------------------------------------------------------
def test_engine_option_is_found_and_stripped():
    assert engine_of(["--data", "d", "--engine", "mxnet"]) == "mxnet"
    assert engine_of(["--engine=pytorch"]) == "pytorch"
    assert engine_of(["--data", "d"]) is None
    assert strip_engine(["--engine", "mxnet", "--name", "a", "--engine=x"]) == ["--name", "a"]


def test_missing_environment_says_how_to_make_it(tmp_path):
    env = {"EPOCHSCOPE_MXNET_PYTHON": str(tmp_path / "none")}
    proc = run_cli("trainer", "train", "--engine", "mxnet", "--data", str(tmp_path), "--name",
                   "a", check=False, env=env)  # fmt: skip
    assert proc.returncode == 2
    assert "make install-mxnet" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unknown_engine_is_refused(tmp_path):
    proc = run_cli("trainer", "train", "--engine", "jax", "--data", str(tmp_path), "--name", "a",
                   check=False)  # fmt: skip
    assert proc.returncode == 2 and "unknown --engine 'jax'" in proc.stderr


def test_gpus_newer_than_cu112_are_refused():
    check_gpu_support([7.0, 8.6], built_with_cuda=True)
    with pytest.raises(DeviceError, match="compute capability 9 is newer"):
        check_gpu_support([8.0, 9.0], built_with_cuda=True)
    with pytest.raises(DeviceError, match="MXNET_PACKAGE=mxnet-cu112"):
        check_gpu_support([8.0], built_with_cuda=False)


def test_data_matches_the_pytorch_engine(demo_data):
    from trainer import data as torchdata

    ours, theirs = mxdata.discover(demo_data), torchdata.discover(demo_data)
    for field in ("root", "layout", "classes", "names", "train", "val"):
        assert getattr(ours, field) == getattr(theirs, field), field
    paths = [demo_data / p for p, _ in ours.train[:5] + ours.val[:5]]
    for i, path in enumerate(paths):
        want = torchdata.eval_pipeline(32)(path)
        assert np.array_equal(mxdata.make_pipeline(32, train=False)(path, random.Random(0)), want)
        # the same augmentation: the same draws from the same seed give the same pixels
        random.seed(i)
        want = torchdata.train_pipeline(32, 0.35)(path)
        got = mxdata.make_pipeline(32, train=True, min_scale=0.35)(path, random.Random(i))
        assert np.array_equal(got, want)


def test_both_engines_parse_one_command_line():
    from trainer.options import GLUON_ARCHS, get_parser

    def flags(engine: str) -> set[str]:
        return {s for a in get_parser(engine)._actions for s in a.option_strings}

    assert flags("pytorch") == flags("mxnet")
    assert "resnet269_v2" not in GLUON_ARCHS and "resnet152_v1" in GLUON_ARCHS


@pytest.mark.parametrize(
    ("engine", "extra", "message"),
    [
        ("mxnet", ["--compile"], "--compile is a PyTorch option"),
        ("mxnet", ["--no-channels-last"], "--no-channels-last is a PyTorch option"),
        ("mxnet", ["--arch", "resnet200_v1"], "not in Gluon's model zoo"),
        ("pytorch", ["--num-devices", "2"], "--num-devices is an MXNet option"),
        ("pytorch", ["--arch", "resnet7"], "unknown architecture 'resnet7'"),
        ("pytorch", ["--name", "../x"], "invalid run name"),
        ("mxnet", ["--threshold-samples", "0.1"], "--threshold-samples is a PyTorch-engine"),
        ("pytorch", ["--threshold-samples", "0.7"], "a share between 0 and 0.5"),
        ("pytorch", ["--threshold-samples", "0.1", "--no-train-stats"], "drop --no-train-stats"),
    ],
)
def test_what_an_engine_cannot_honour_is_refused(engine, extra, message):
    from trainer.options import GLUON_ARCHS, UsageError, parse_args, validate

    archs = GLUON_ARCHS if engine == "mxnet" else (*GLUON_ARCHS, "resnet200_v1")
    args, explicit = parse_args(["--data", "d", "--name", "a", *extra], engine, archs)
    with pytest.raises(UsageError, match=message):
        validate(args, explicit, engine, archs)
    args, explicit = parse_args(["--data", "d", "--name", "a", "--no-amp"], engine, archs)
    validate(args, explicit, engine, archs)  # --no-amp: accepted by both


# --- real MXNet runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mx_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mxdata") / "demo10"
    run_cli("trainer", "make-demo-data", str(root), "--classes", "10", "--train-per-class", "40",
            "--val-per-class", "10", "--image-size", "32", "--seed", "0", "--quiet")  # fmt: skip
    return root


@pytest.fixture(scope="module")
def mx_run(mx_data, tmp_path_factory) -> Path:
    """Two epochs split over two CPU contexts with a device kvstore (the seed's 4-GPU path)."""
    runs = tmp_path_factory.mktemp("mxruns")
    run_cli("trainer", "train", "--data", str(mx_data), "--runs-dir", str(runs), "--name", "mx",
            *RUN_ARGS, "--num-devices", "2", "--log-interval", "4")  # fmt: skip
    return runs / "mx"


@needs_mxnet
@pytest.mark.slow
def test_mxnet_run_writes_the_contract(mx_run):
    info = json.loads((mx_run / "run.json").read_text())
    assert info["engine"] == "mxnet" and info["engine_version"] == "1.9.1"
    assert info["world_size"] == 2 and len(info["devices"]) == 2
    assert info["preprocess"]["input_name"] == "input" and info["preprocess"]["output"] == "logits"
    classes = read_tsv(mx_run / "classes.tsv")
    val = read_tsv(mx_run / "val_index.tsv")
    assert len(classes) == info["data"]["num_classes"] == 10
    assert [int(r["row"]) for r in val] == list(range(info["data"]["num_val"]))
    labels = np.array([int(r["label"]) for r in val])

    events = read_events(mx_run)
    assert all({"kind", "time", "epoch"} <= set(e) for e in events)
    status = [e["state"] for e in events if e["kind"] == "status"]
    assert status == ["started", "finished"]
    epochs = {e["epoch"]: e for e in events if e["kind"] == "epoch"}
    assert sorted(epochs) == [1, 2]
    steps = [e for e in events if e["kind"] == "step"]
    assert [s["step"] for s in steps] == [4, 8, 12, 16, 20, 24]
    assert all(0 <= s["top1"] <= s["top5"] <= 1 and s["steps_per_epoch"] == 12 for s in steps)
    assert any(e["kind"] == "device" and e["device_kind"] == "cpu" for e in events)

    import onnx

    for epoch, event in epochs.items():
        with np.load(mx_run / "predictions" / f"epoch-{epoch:04d}.npz", allow_pickle=False) as z:
            assert z["top5"].dtype == np.int16 and z["top5"].shape == (len(val), 5)
            assert z["prob"].dtype == np.float16 and z["prob"].shape == (len(val), 5)
            assert np.all(np.diff(z["prob"].astype(np.float32), axis=1) <= 1e-3)
            hit5 = (z["top5"] == labels[:, None]).any(axis=1).mean()
            # label scores and the temperature from the full logits (the PyTorch engine's too)
            right = z["top5"][:, 0] == labels
            assert (z["margin"][right] >= 0).all() and (z["margin"][~right] <= 0).all()
            assert np.abs(z["confidence"] - z["prob"][:, 0]).max() < 1e-3
            assert z["temperature"].shape == () and z["temperature"] > 0
        assert event["val_top5"] == pytest.approx(hit5)
        check_train_stats(mx_run, epoch, info, event)  # both contexts' rows, by index
        onnx.checker.check_model(str(mx_run / "models" / f"epoch-{epoch:04d}.onnx"))
        for suffix in (".params", ".states.npz", ".json"):
            assert (mx_run / "checkpoints" / f"epoch-{epoch:04d}{suffix}").is_file()
    assert epochs[2]["val_top5"] > 0.5  # chance is 5/10
    assert not list(mx_run.rglob(".*.tmp-*")) and not (mx_run / "trainer.pid").exists()


@needs_mxnet
@pytest.mark.slow
def test_dashboard_reads_and_classifies_an_mxnet_run(mx_run):
    from PIL import Image

    from dashboard.inference import Classifier, SessionCache
    from epochscope import reader as rundir

    [summary] = rundir.list_runs(mx_run.parent)
    assert (summary.name, summary.engine, summary.state) == ("mx", "mxnet", "finished")
    assert summary.epochs_done == summary.epochs_total == EPOCHS
    info = rundir.read_run_info(mx_run)
    top5, _ = rundir.load_predictions(mx_run, EPOCHS, info.data.num_val, info.data.num_classes)
    log = rundir.MetricsLog(mx_run / "metrics.jsonl")
    assert sorted(rundir.epoch_table(log.refresh())) == [1, 2]

    # the mx.onnx model, fed as the dashboard feeds it, agrees with MXNet's own predictions
    classifier = Classifier.for_run(mx_run, EPOCHS, SessionCache())
    root = Path(info.data.root)
    rows = read_tsv(mx_run / "val_index.tsv")
    images = [Image.open(root / r["path"]).convert("RGB") for r in rows]
    results = classifier.classify_images(images)
    onnx_top1 = np.array([r[0]["index"] for r in results])
    assert (onnx_top1 == top5[:, 0]).mean() >= 0.99
    assert len(classifier.classify_images(images[:1])) == 1  # dynamic batch


@needs_mxnet
@pytest.mark.slow
def test_mxnet_embeddings_are_the_onnx_models_features_in_val_order(mx_run):
    """Each epoch stores its validation embeddings (pooled features split over two contexts,
    gathered in val_index order); the epoch's mx.onnx model's ``embedding`` output on the
    validation images, through the stored projection, gives them back row for row, so a photo
    lands among them."""
    import onnxruntime as ort

    from epochscope import open_run
    from epochscope import reader as rundir
    from epochscope.preprocess import preprocess

    info = rundir.read_run_info(mx_run)
    labels, paths = rundir.read_val_index(mx_run)
    assert rundir.embedding_epochs(mx_run) == list(range(1, EPOCHS + 1))
    batch = np.stack([preprocess(Path(info.data.root) / p, info.preprocess) for p in paths])
    for epoch in range(1, EPOCHS + 1):
        stored = rundir.load_embeddings(mx_run, epoch, len(labels))
        features = stored.projection.features
        assert features == 128  # resnet18_v2 at --width 0.25: 512 / 4 channels feed the Dense
        assert stored.vectors.shape == (len(labels), min(128, features, len(labels)))
        model = rundir.model_path(mx_run, epoch)
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
        logits, embedding = session.run(None, {"input": batch})
        assert logits.shape == (len(labels), 10) and embedding.shape == (len(labels), features)
        mine = stored.projection(embedding)
        scale = np.abs(mine).max()
        assert np.abs(stored.vectors.astype(np.float32) - mine).max() < 0.02 * scale

    # neighbours of a validation row, and of a photo through the model's embedding output
    run = open_run(mx_run)
    near = run.similar(3, k=5)
    assert len(near) == 5 and 3 not in near["index"].tolist()
    photo = run.similar(Path(info.data.root) / paths[3], k=5)
    assert photo["index"].iloc[0] == 3 and photo["distance"].iloc[0] < 1e-2


@needs_mxnet
@pytest.mark.slow
def test_mxnet_embeddings_are_pruned_with_the_models_and_can_be_turned_off(mx_data, tmp_path):
    args = ("trainer", "train", "--data", str(mx_data), "--runs-dir", str(tmp_path), *RUN_ARGS)
    run_cli(*args, "--name", "kept", "--epochs", "3", "--keep-models", "1")
    kept = tmp_path / "kept"
    from epochscope import reader as rundir

    best = json.loads((kept / "checkpoints" / "epoch-0003.json").read_text())["best"]["epoch"]
    assert rundir.model_epochs(kept) == rundir.embedding_epochs(kept) == sorted({best, 3})

    run_cli(*args, "--name", "off", "--epochs", "1", "--no-embeddings")
    off = tmp_path / "off"
    assert rundir.model_epochs(off) == [1] and rundir.embedding_epochs(off) == []
    assert not (off / "embeddings").exists()
    import onnxruntime as ort

    # the model keeps its embedding output, as the PyTorch engine's does
    model = ort.InferenceSession(str(rundir.model_path(off, 1)), providers=["CPUExecutionProvider"])
    assert [o.name for o in model.get_outputs()] == ["logits", "embedding"]


@needs_mxnet
@pytest.mark.slow
def test_sigkill_then_resume_sees_each_epoch_once(mx_data, tmp_path):
    import psutil

    run = tmp_path / "killed"
    args = ("trainer", "train", "--data", str(mx_data), "--runs-dir", str(tmp_path),
            "--name", "killed", *RUN_ARGS, "--log-interval", "1")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    workers = []
    try:
        deadline = time.monotonic() + 90
        while not _has_step(run, epoch=2, epoch_step=3):
            assert proc.poll() is None, f"trainer exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "timed out waiting for epoch 2"
            time.sleep(0.05)
        workers = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.send_signal(signal.SIGKILL)  # the engine itself: the launcher exec'ed into it
        proc.wait()
    assert workers, "expected a data-loading worker"
    psutil.wait_procs(workers, timeout=10)
    assert not [w for w in workers if w.is_running()], "workers outlived their trainer"
    assert not (run / "checkpoints" / "epoch-0002.json").exists()
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "step", "time": 1, "ep')  # a write torn by the crash

    out = run_cli(*args, "--resume").stdout
    assert "epochs 2..2" in out
    events = read_events(run)
    resumed = [e for e in events if e["kind"] == "status" and e["state"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["from_epoch"] == 1
    assert sorted(e["epoch"] for e in events if e["kind"] == "epoch") == [1, 2]
    assert [e["state"] for e in events if e["kind"] == "status"][-1] == "finished"
    import onnxruntime as ort

    for model in (run / "models").glob("epoch-*.onnx"):
        ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def _has_step(run: Path, **match) -> bool:
    try:
        events = read_events(run)
    except (FileNotFoundError, AssertionError, ValueError):
        return False
    return any(e["kind"] == "step" and all(e.get(k) == v for k, v in match.items()) for e in events)


@needs_mxnet  # fast: the engine refuses these before importing MXNet
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compile"], "--compile is a PyTorch option"),
        (["--arch", "resnet269_v2"], "not in Gluon's model zoo"),
    ],
)
def test_options_mxnet_cannot_honour_are_one_line(extra, message, mx_data, tmp_path):
    proc = run_cli("trainer", "train", "--data", str(mx_data), "--runs-dir", str(tmp_path),
                   "--name", "bad", *RUN_ARGS, *extra, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
