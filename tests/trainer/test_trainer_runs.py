"""Real tiny training runs on CPU: the run-directory contract, DDP, kill -9 and resume, ONNX,
background start and stop, and clear failures on bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epochscope import reader
from tests.conftest import REPO, TINY_CLASSES, TINY_EPOCHS, TINY_TRAIN_ARGS, run_cli
from tests.support import (
    check_run_directory,
    epochs_last_wins,
    read_events,
    read_tsv,
)
from tests.waits import wait_for
from trainer.background import process_alive

pytestmark = pytest.mark.slow


def test_tiny_run_writes_the_contract_and_learns(tiny_run):
    counts = check_run_directory(tiny_run, TINY_EPOCHS)
    assert counts["classes"] == TINY_CLASSES
    last = epochs_last_wins(read_events(tiny_run))[TINY_EPOCHS]
    # Guessing gets top-5 5/20 = 0.25, with a standard deviation of sqrt(.25 * .75 / 200) = 0.031
    # on the 200 validation images; 0.37 is four of those above chance. (Three epochs of a
    # quarter-width net land anywhere in 0.43-0.8 depending on thread timing: no tighter bound.)
    chance, sd = 0.25, (0.25 * 0.75 / counts["val"]) ** 0.5
    assert last["val_top5"] >= chance + 4 * sd, last
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["hparams"]["width"] == 0.25 and info["world_size"] == 1


def test_onnx_model_agrees_with_pytorch(tiny_run):
    import onnxruntime as ort

    from epochscope.preprocess import preprocess
    from epochscope.records import Preprocess

    info = json.loads((tiny_run / "run.json").read_text())
    root = Path(info["data"]["root"])
    paths = [r["path"] for r in read_tsv(tiny_run / "val_index.tsv")]
    pre = Preprocess.from_dict(info["preprocess"])  # what the run says, as every reader does
    batch = np.stack([preprocess(root / p, pre) for p in paths])
    model = tiny_run / "models" / f"epoch-{TINY_EPOCHS:04d}.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": batch})[0]
    assert logits.shape == (len(paths), TINY_CLASSES)
    with np.load(tiny_run / "predictions" / f"epoch-{TINY_EPOCHS:04d}.npz") as z:
        torch_top1 = z["top5"][:, 0]
    agree = (logits.argmax(axis=1) == torch_top1).mean()
    assert agree >= 0.99, agree


def test_predict_prints_top5(tiny_run):
    info = json.loads((tiny_run / "run.json").read_text())
    image = Path(info["data"]["root"]) / read_tsv(tiny_run / "val_index.tsv")[0]["path"]
    out = run_cli("trainer", "predict", "--runs-dir", str(tiny_run.parent), "--run", "tiny",
                  "--epoch", "2", str(image)).stdout  # fmt: skip
    assert "Predicted top class:" in out and "epoch 2" in out
    assert sum(line.startswith(f'[{k}] "n') for k in range(1, 6) for line in out.splitlines()) == 5


def test_torchrun_two_processes_match_single(tiny_run, tiny_ddp_run):
    ddp = check_run_directory(tiny_ddp_run, TINY_EPOCHS)
    single = check_run_directory(tiny_run, TINY_EPOCHS)
    assert ddp["files"] == [f for f in single["files"] if f != "train.log"]
    assert (ddp["val"], ddp["classes"], ddp["epochs"], ddp["steps"]) == (
        single["val"], single["classes"], single["epochs"], single["steps"]
    )  # fmt: skip
    info = json.loads((tiny_ddp_run / "run.json").read_text())
    assert info["world_size"] == 2
    # the label arrays are gathered in the same row order as the top-5, and the temperature
    # was fitted over both ranks' rows
    labels, _ = reader.read_val_index(tiny_ddp_run)
    for epoch in reader.prediction_epochs(tiny_ddp_run):
        top5, prob = reader.load_predictions(tiny_ddp_run, epoch)
        arrays = reader.load_label_stats(tiny_ddp_run, epoch, len(labels))
        assert arrays is not None
        right = top5[:, 0] == labels
        assert (arrays["margin"][right] >= 0).all() and (arrays["margin"][~right] <= 0).all()
        assert np.abs(arrays["confidence"] - prob[:, 0]).max() < 1e-3


def _has_event(run: Path, **match) -> bool:
    try:
        events = read_events(run)
    except (FileNotFoundError, AssertionError, ValueError):
        return False
    return any(all(e.get(k) == v for k, v in match.items()) for e in events)


def test_sigkill_then_resume_sees_each_epoch_once(demo_data, runs_dir):
    run = runs_dir / "killed"
    args = ("trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs_dir),
            "--name", "killed", *TINY_TRAIN_ARGS, "--log-interval", "1")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _has_event(run, kind="step", epoch=2, epoch_step=3), 120,
                 "step 3 of epoch 2", interval=0.05, proc=proc)  # fmt: skip
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "checkpoints" / "epoch-0002.pt").exists()
    # a write torn by a crash, as a reader might find it
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "step", "time": 1, "ep')

    out = run_cli(*args, "--resume").stdout
    assert "epochs 2..3" in out
    events = read_events(run)  # every line parses: the torn one was cut
    resumed = [e for e in events if e["kind"] == "status" and e["state"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["from_epoch"] == 1
    check_run_directory(run, TINY_EPOCHS)
    import onnxruntime as ort

    for model in (run / "models").glob("epoch-*.onnx"):
        ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def test_background_start_refuses_second_and_stops(demo_data, runs_dir):
    run = runs_dir / "bg"
    common = ("--data", str(demo_data), "--runs-dir", str(runs_dir), "--name", "bg",
              *TINY_TRAIN_ARGS, "--epochs", "50")  # fmt: skip
    out = run_cli("trainer", "train", *common, "--background", "--resume-or-start").stdout
    assert "train.log" in out
    try:
        pid = int((run / "trainer.pid").read_text())
        wait_for(lambda: _has_event(run, kind="epoch", epoch=1), 120, "epoch 1", interval=0.05)
        second = run_cli("trainer", "train", *common, "--resume", check=False)
        assert second.returncode == 3
        assert "another writer" in second.stderr and "Traceback" not in second.stderr
        stop = run_cli("trainer", "stop", "bg", "--runs-dir", str(runs_dir))
        assert "stopped" in stop.stdout
    finally:
        if (run / "trainer.pid").exists():
            os.kill(int((run / "trainer.pid").read_text()), signal.SIGKILL)
    statuses = [e["state"] for e in read_events(run) if e["kind"] == "status"]
    assert statuses == ["started", "stopped"]
    assert not (run / "trainer.pid").exists()
    assert not process_alive(pid)
    assert "epoch 1/50" in (run / "train.log").read_text()
    assert "no trainer is running" in run_cli("trainer", "stop", "bg", "--runs-dir",
                                              str(runs_dir)).stdout  # fmt: skip


def test_corrupt_jpeg_is_counted_and_skipped(demo_data, tmp_path):
    data = tmp_path / "data"
    classes = sorted(p.name for p in (demo_data / "train").iterdir())[:4]
    for split in ("train", "val"):
        for c in classes:
            shutil.copytree(demo_data / split / c, data / split / c)
    victim = sorted((data / "train" / classes[0]).iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:60])
    (data / "val" / classes[1] / "broken.JPEG").write_text("this is not a JPEG")
    runs = tmp_path / "runs"
    proc = run_cli("trainer", "train", "--data", str(data), "--runs-dir", str(runs),
                   "--name", "corrupt", *TINY_TRAIN_ARGS, "--epochs", "2",
                   "--batch-size", "16")  # fmt: skip
    assert "skipped 2 unreadable image(s)" in proc.stderr
    events = read_events(runs / "corrupt")
    warnings = [e for e in events if e["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["count"] == 2  # reported once, not every epoch
    assert [e["skipped_images"] for e in events if e["kind"] == "epoch"] == [2, 2]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no images found"),
        ("no-images", "no images in"),
        ("file", "is a file"),
        ("arch", "unknown architecture 'resnet7'"),
    ],
)
def test_bad_input_is_one_clear_line(case, message, demo_data, tmp_path, capsys):
    """Refused before anything is written, in one line and exit status 2. The command runs in
    this process (the CLI's main, as ``python -m trainer`` calls it) except for one case, run as
    a user runs it, which also holds that no traceback reaches the terminal."""
    data = tmp_path / "data"
    extra: tuple[str, ...] = ()
    if case == "empty":
        data.mkdir()
    elif case == "no-images":
        (data / "train" / "cats").mkdir(parents=True)
        (data / "train" / "cats" / "notes.txt").write_text("no pictures here")
    elif case == "file":
        data.write_text("I am not a folder")
    elif case == "arch":
        data = demo_data
        extra = ("--arch", "resnet7")
    args = ("train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--name", "bad",
            "--epochs", "1", *extra)  # fmt: skip
    if case == "missing":
        proc = run_cli("trainer", *args, check=False)
        code, stderr = proc.returncode, proc.stderr
    else:
        from trainer import cli

        try:
            code = cli.main(list(args))
        except SystemExit as e:
            code = e.code
        stderr = capsys.readouterr().err
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "bad").exists()


def test_predict_rejects_a_non_image(tiny_run, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a photo")
    proc = run_cli("trainer", "predict", "--runs-dir", str(tiny_run.parent), "--run", "tiny",
                   str(fake), check=False)  # fmt: skip
    assert proc.returncode == 2 and "not a readable image" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_of_a_run_whose_checkpoints_are_gone_exits_2(tiny_run, demo_data, tmp_path):
    """The real CLI: the run's 3 epochs stay as they were, nothing is trained again."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    shutil.rmtree(runs / "tiny" / "checkpoints")
    files = [p for p in (runs / "tiny").rglob("*") if p.is_file() and p.name != "run.lock"]
    before = {p: p.read_bytes() for p in files}
    proc = run_cli("trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs),
                   "--name", "tiny", *TINY_TRAIN_ARGS, "--resume", check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "has finished epochs 1..3 but no checkpoint" in proc.stderr
    files = [p for p in (runs / "tiny").rglob("*") if p.is_file() and p.name != "run.lock"]
    assert {p: p.read_bytes() for p in files} == before


def test_embeddings_are_the_onnx_models_features_in_val_order(tiny_run):
    """Each epoch stores its validation embeddings; the epoch's ONNX model's ``embedding``
    output on the validation images, through the stored projection, gives them back row for
    row (the trainer's pooled features, gathered in val_index order)."""
    import onnxruntime as ort

    from epochscope.preprocess import preprocess

    assert reader.embedding_epochs(tiny_run) == list(range(1, TINY_EPOCHS + 1))
    info = reader.read_run_info(tiny_run)
    labels, paths = reader.read_val_index(tiny_run)
    stored = reader.load_embeddings(tiny_run, TINY_EPOCHS, len(labels))
    assert stored.vectors.shape == (len(labels), min(128, stored.projection.features))
    model = reader.model_path(tiny_run, TINY_EPOCHS)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(Path(info.data.root) / p, info.preprocess) for p in paths])
    (features,) = session.run(["embedding"], {"input": batch})
    mine = stored.projection(features)
    scale = np.abs(mine).max()
    assert np.abs(stored.vectors.astype(np.float32) - mine).max() < 0.02 * scale
