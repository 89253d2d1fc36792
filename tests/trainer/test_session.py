"""trainer/session.py with a toy engine (numpy only, no framework): the per-epoch record's order,
pruning, the resume decision, and the exit codes and final statuses of every way out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epochscope.writer import RunWriter
from tests.conftest import REPO, needs_mxnet
from trainer.datasets import DatasetIndex
from trainer.mxnet_engine.launch import mxnet_python
from trainer.options import parse_args
from trainer.session import RunSession, TrainTotals

SUFFIXES = (".meta.json", ".weights.npz")  # a toy engine's checkpoint: the marker first


def toy_index(root: Path) -> DatasetIndex:
    train = [(f"train/c{i % 3}/{i}.jpg", i % 3) for i in range(12)]
    val = [(f"val/c{i % 3}/{i}.jpg", i % 3) for i in range(6)]
    return DatasetIndex(root=root, layout="toy", classes=["c0", "c1", "c2"],
                        names=["zero", "one", "two"], train=train, val=val)  # fmt: skip


def load(marker: Path) -> dict:
    state = json.loads(marker.read_text())
    with np.load(marker.with_name(marker.name.replace(*SUFFIXES)), allow_pickle=False) as z:
        state["w"] = z["w"]
    return state


def session_for(tmp_path: Path, *extra: str) -> RunSession:
    argv = [
        "--data",
        str(tmp_path),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "toy",
        "--epochs",
        "3",
        "--keep-checkpoints",
        "1",
        "--recipe",
        "seed",
        *extra,
    ]  # fmt: skip  (the seed's recipe: lr 0.1 whatever the size)
    args, explicit = parse_args(argv, "pytorch", ["resnet18_v2"])
    return RunSession(args, explicit, argv, engine="toy")


def toy_train(session: RunSession, fail_at: int | None = None, on_epoch=None) -> None:
    index = toy_index(session.run_dir.parent)
    state = session.open(SUFFIXES, load)
    w = state["w"] if state else np.zeros(3)
    session.begin(index, engine_version="0", world_size=1, devices=[], device_kind="cpu")
    run = session.run_dir
    for epoch in session.epochs():
        if on_epoch:
            on_epoch(epoch)
        if epoch == fail_at:
            raise RuntimeError("the toy broke\nsecond line")
        w = w + 1
        session.log_step(epoch, {"epoch_step": 2, "steps_per_epoch": 2, "loss": 1.0, "lr": 0.1,
                                 "img_per_s": 1.0, "top1": 0.5, "top5": 1.0})  # fmt: skip
        top = np.tile([[epoch % 3, (epoch + 1) % 3, (epoch + 2) % 3]], (6, 1))

        def save(writer: RunWriter, epoch: int, meta: dict, w: np.ndarray = w) -> None:
            # the documented order: predictions, model and the epoch event come first
            events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            assert events[-1]["kind"] == "epoch" and events[-1]["epoch"] == epoch
            assert (run / f"predictions/epoch-{epoch:04d}.npz").is_file()
            assert (run / f"models/epoch-{epoch:04d}.onnx").read_bytes() == b"onnx"
            writer.write_npz(f"checkpoints/epoch-{epoch:04d}{SUFFIXES[1]}", w=w)
            writer.write_json(f"checkpoints/epoch-{epoch:04d}{SUFFIXES[0]}", meta)

        totals = TrainTotals(6.0, 3.0, 12.0, 12, 12, 1.0, bad=[1] if epoch == 1 else [])
        val = {"top5": top, "prob": np.full((6, 3), 1 / 3), "loss": np.ones(6),
               "ok": np.ones(6, bool)}  # fmt: skip
        session.record_epoch(epoch, totals, val, val_seconds=0.5, lr=0.1,
                             onnx=lambda: b"onnx", save=save)  # fmt: skip


def events(tmp_path: Path) -> list[dict]:
    text = (tmp_path / "runs" / "toy" / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_a_run_then_a_resume(tmp_path: Path, capsys) -> None:
    session = session_for(tmp_path)
    assert session.run(lambda: toy_train(session, fail_at=3)) == 1
    assert "error: training failed: RuntimeError: the toy broke" in capsys.readouterr().err
    failed = events(tmp_path)[-1]
    assert (failed["state"], failed["epoch"], failed["error"]) == (
        "failed", 3, "RuntimeError: the toy broke"
    )  # fmt: skip
    folder = tmp_path / "runs" / "toy" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [f"epoch-0002{s}" for s in SUFFIXES]
    warnings = [e for e in events(tmp_path) if e["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["message"].endswith("train/c1/1.jpg")

    # a torn newer checkpoint is skipped; the run's saved --lr wins, --epochs is runtime
    (folder / f"epoch-0003{SUFFIXES[0]}").write_text('{"epo')
    session = session_for(tmp_path, "--resume", "--lr", "0.5", "--epochs", "4")
    assert session.run(lambda: toy_train(session)) == 0
    out = capsys.readouterr().out
    assert "checkpoint epoch-0003.meta.json does not load" in out
    assert "--lr 0.5 ignored on resume; the run uses 0.1" in out and "epochs 3..4" in out
    assert session.args.lr == 0.1 and session.args.epochs == 4
    status = [(e["state"], e["epoch"]) for e in events(tmp_path) if e["kind"] == "status"]
    assert status == [("started", 1), ("failed", 3), ("resumed", 3), ("finished", 4)]
    epoch_events = [e for e in events(tmp_path) if e["kind"] == "epoch"]
    assert [e["epoch"] for e in epoch_events] == [1, 2, 3, 4]
    assert [e["skipped_images"] for e in epoch_events] == [1, 1, 1, 1]  # counted once, kept
    assert load(folder / f"epoch-0004{SUFFIXES[0]}")["w"].tolist() == [4.0, 4.0, 4.0]
    steps = [e["step"] for e in events(tmp_path) if e["kind"] == "step"]
    assert steps == [2, 4, 6, 8]

    session = session_for(tmp_path, "--resume", "--epochs", "4")
    assert session.run(lambda: toy_train(session)) == 0
    assert "already finished its 4 epochs" in capsys.readouterr().out


def test_usage_lock_and_stop(tmp_path: Path, capsys) -> None:
    session = session_for(tmp_path, "--resume")
    assert session.run(lambda: toy_train(session)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: no run 'toy' in {tmp_path / 'runs'} to resume"
    )  # fmt: skip
    assert not (tmp_path / "runs" / "toy").exists()  # a refused run leaves nothing

    holder = RunWriter(tmp_path / "runs" / "toy")
    holder.acquire()
    try:
        session = session_for(tmp_path)
        assert session.run(lambda: toy_train(session)) == 3
        assert "another writer" in capsys.readouterr().err
    finally:
        holder.close()

    session = session_for(tmp_path)
    sigterm = lambda epoch: epoch == 2 and os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    assert session.run(lambda: toy_train(session, on_epoch=sigterm)) == 0
    assert "stopped during epoch 2" in capsys.readouterr().out
    assert events(tmp_path)[-1]["state"] == "stopped"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


class _StopWhileReported(RuntimeError):
    """A failure whose message takes a SIGTERM to read: what torchrun does to a rank that is
    still reporting its own failure after another rank died."""

    def __str__(self) -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        return "the peer rank is gone"


def test_a_stop_signal_while_a_failure_is_reported_still_records_failed(tmp_path: Path, capsys):
    def fail(epoch: int) -> None:
        if epoch == 2:
            raise _StopWhileReported()

    session = session_for(tmp_path)
    assert session.run(lambda: toy_train(session, on_epoch=fail)) == 1
    err = capsys.readouterr().err
    assert "SIGTERM while the run's end is written" in err
    last = events(tmp_path)[-1]
    assert (last["state"], last["epoch"]) == ("failed", 2)
    assert last["error"] == "_StopWhileReported: the peer rank is gone"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_full_disk_at_the_end_is_said_on_stderr(tmp_path: Path, capsys, monkeypatch) -> None:
    def fill_disk(epoch: int) -> None:
        if epoch == 2:
            monkeypatch.setenv("EPOCHSCOPE_FAULT", "enospc-all-after:0")

    session = session_for(tmp_path)
    assert session.run(lambda: toy_train(session, on_epoch=fill_disk)) == 1
    err = capsys.readouterr().err
    assert "could not write the 'failed' status" in err and "No space left" in err
    assert events(tmp_path)[-1]["kind"] == "epoch"  # nothing after epoch 1 was written


@pytest.mark.parametrize(
    "python", [sys.executable, pytest.param(mxnet_python(), marks=needs_mxnet)]
)
def test_the_session_and_options_import_no_framework(python) -> None:
    code = ("import sys, trainer.session, trainer.options; "
            "print(sorted({'torch', 'mxnet'} & set(sys.modules)))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env=env)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_resume_with_no_checkpoint_left_refuses_instead_of_retraining(tmp_path: Path, capsys):
    session = session_for(tmp_path)
    assert session.run(lambda: toy_train(session, fail_at=3)) == 1
    run = tmp_path / "runs" / "toy"
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"}
    capsys.readouterr()
    for flag in ("--resume", "--resume-or-start"):
        session = session_for(tmp_path, flag)
        assert session.run(lambda s=session: toy_train(s)) == 2
        err = capsys.readouterr().err
        assert "has finished epochs 1..2 but no checkpoint after any" in err and "--name" in err
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"}
    assert after == before  # no epoch trained again, no status written


@pytest.mark.parametrize("fail_at", [1, 2])
def test_resume_trains_again_only_what_a_crash_can_leave(tmp_path: Path, fail_at: int) -> None:
    """No finished epoch, or one finished epoch whose checkpoint a kill prevented: resumed."""
    session = session_for(tmp_path)
    assert session.run(lambda: toy_train(session, fail_at=fail_at)) == 1
    for path in (tmp_path / "runs" / "toy").glob("checkpoints/*"):
        path.unlink()  # epoch 1 finished (fail_at=2), killed before its checkpoint
    session = session_for(tmp_path, "--resume")
    assert session.run(lambda: toy_train(session)) == 0
    epochs = [e["epoch"] for e in events(tmp_path) if e["kind"] == "epoch"]
    assert epochs == [1, 2, 3] if fail_at == 1 else [1, 1, 2, 3]


def test_embeddings_are_written_and_pruned_with_the_models(tmp_path: Path) -> None:
    """An engine's ``features`` become the epoch's embeddings; --keep-models prunes them with
    the models, never the best epoch's (epoch 1 here: later ones are no better)."""
    from epochscope import reader

    session = session_for(tmp_path, "--keep-models", "2")
    rng = np.random.default_rng(0)
    index = toy_index(tmp_path)
    features = {e: rng.normal(size=(6, 5)).astype(np.float32) for e in (1, 2, 3)}

    def train() -> None:
        session.open(SUFFIXES, load)
        session.begin(index, engine_version="0", world_size=1, devices=[], device_kind="cpu")
        for epoch in session.epochs():
            top = np.tile([[0, 1, 2]], (6, 1))
            val = {"top5": top, "prob": np.full((6, 3), 1 / 3), "loss": np.ones(6),
                   "ok": np.ones(6, bool), "features": features[epoch]}  # fmt: skip

            def save(writer: RunWriter, epoch: int, meta: dict) -> None:
                writer.write_json(f"checkpoints/epoch-{epoch:04d}{SUFFIXES[0]}", meta)

            totals = TrainTotals(6.0, 3.0, 12.0, 12, 12, 1.0)
            session.record_epoch(epoch, totals, val, val_seconds=0.5, lr=0.1,
                                 onnx=lambda: b"onnx", save=save)  # fmt: skip

    assert session.run(train) == 0
    run = tmp_path / "runs" / "toy"
    assert reader.model_epochs(run) == reader.embedding_epochs(run) == [1, 3]
    stored = reader.load_embeddings(run, 3, 6)
    assert np.allclose(stored.vectors, stored.projection(features[3]), atol=1e-2)
