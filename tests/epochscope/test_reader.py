"""The run-directory reader: incremental metrics, run states, safe names, predictions."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from dashboard.training import live
from epochscope import Runs
from epochscope import reader as rundir
from epochscope.reader import MetricsCache, MetricsLog
from tests.support import epoch_event, make_fake_run


def _line(**ev) -> str:
    return json.dumps(ev) + "\n"


def test_reads_only_appended_bytes_and_keeps_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(kind="epoch", epoch=1, val_top5=0.1) + '{"kind": "epoch", "ep')
    log = MetricsLog(path)
    assert [e["epoch"] for e in log.refresh()] == [1]
    assert log.offset == path.stat().st_size  # the partial line was read once, and kept
    assert log.refresh() == []
    with path.open("a") as f:
        f.write('och": 2, "val_top5": 0.2}\n')
    new = log.refresh()
    assert new == [{"kind": "epoch", "epoch": 2, "val_top5": 0.2}]
    assert log.position == path.stat().st_size
    assert [e["epoch"] for e in log.events] == [1, 2]


def test_garbage_lines_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        _line(kind="epoch", epoch=1)
        + "not json at all\n"
        + "[1, 2]\n"
        + _line(kind="step", epoch=1)
    )
    with caplog.at_level(logging.WARNING, logger="epochscope.reader"):
        events = MetricsLog(path).refresh()
    assert [e["kind"] for e in events] == ["epoch", "step"]
    assert sum("skipping" in r.message for r in caplog.records) == 2


def test_truncated_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(kind="epoch", epoch=1) + _line(kind="epoch", epoch=2))
    log = MetricsLog(path)
    log.refresh()
    generation = log.generation
    path.write_text(_line(kind="epoch", epoch=7))  # same inode, shorter
    assert [e["epoch"] for e in log.refresh()] == [7]
    assert [e["epoch"] for e in log.events] == [7]
    assert log.generation == generation + 1


def test_replaced_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(kind="epoch", epoch=1))
    log = MetricsLog(path)
    log.refresh()
    other = tmp_path / "new.jsonl"
    other.write_text(_line(kind="epoch", epoch=5) + _line(kind="epoch", epoch=6) + "x" * 100)
    os.replace(other, path)  # longer than before, but a different file
    assert [e["epoch"] for e in log.refresh()] == [5, 6]
    assert [e["epoch"] for e in log.events] == [5, 6]


def test_since_gives_the_rest_and_detects_foreign_positions(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(kind="epoch", epoch=1) + _line(kind="epoch", epoch=2))
    log = MetricsLog(path)
    log.refresh()
    first_end = log.ends[0]
    rest, ok, end = log.since(first_end)
    assert ok and [e["epoch"] for e in rest] == [2] and end == path.stat().st_size
    everything, ok, _ = log.since(first_end + 1)  # not a line end: start over
    assert not ok and len(everything) == 2


def test_resumed_run_repeated_epoch_last_wins(tmp_path: Path) -> None:
    events = [
        {"kind": "epoch", "epoch": 1, "val_top5": 0.3},
        {"kind": "epoch", "epoch": 2, "val_top5": 0.5},
        {"kind": "status", "epoch": 2, "state": "resumed", "from_epoch": 1},
        {"kind": "epoch", "epoch": 2, "val_top5": 0.4},
        {"kind": "epoch", "epoch": 3, "val_top5": 0.45},
    ]
    table = rundir.epoch_table(events)
    assert list(table) == [1, 2, 3]
    assert table[2]["val_top5"] == 0.4
    assert rundir.best_epoch(table) == 3


def _fresh_cache() -> MetricsCache:
    return MetricsCache()


def _fresh_summaries() -> rundir.SummaryCache:
    return rundir.SummaryCache()


def test_list_runs_states(tmp_path: Path) -> None:
    make_fake_run(tmp_path, "done", state="finished", started=100.0)
    failed = make_fake_run(tmp_path, "broke", state=None, started=300.0)
    with (failed / "metrics.jsonl").open("a") as f:
        f.write(_line(kind="status", time=1.0, epoch=2, state="failed", error="CUDA out of memory"))
    make_fake_run(tmp_path, "dead", state=None, started=200.0)  # started, nobody holds the lock
    live_run = make_fake_run(tmp_path, "alive", state=None, started=400.0)
    (tmp_path / ".tmp-not-a-run").mkdir()
    (tmp_path / "no-run-json").mkdir()
    lock_fd = os.open(live_run / "run.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        runs = {r.name: r for r in rundir.list_runs(tmp_path, summaries=_fresh_summaries())}
        assert [r.name for r in rundir.list_runs(tmp_path, summaries=_fresh_summaries())] == [
            "alive", "broke", "dead", "done",
        ]  # fmt: skip
    finally:
        os.close(lock_fd)
    assert runs["alive"].state == "running"
    assert runs["dead"].state == "crashed"
    assert runs["done"].state == "finished"
    assert runs["broke"].state == "failed" and runs["broke"].error == "CUDA out of memory"
    assert runs["done"].epochs_done == 2 and runs["done"].epochs_total == 5
    assert runs["done"].best_val_top5 == pytest.approx(0.45)
    assert "2/5" in runs["done"].label()
    # once the holder is gone the lock is free: the writer died, the run reads as crashed
    assert rundir.list_runs(tmp_path, summaries=_fresh_summaries())[0].state == "crashed"


@pytest.mark.parametrize(
    "name",
    ["..", ".", "../x", "/etc", "a/b", "a\\b", "", ".hidden", "x" * 65, "a b", "é", None, 3],
)
def test_safe_run_dir_refuses_bad_names(tmp_path: Path, name) -> None:
    with pytest.raises(ValueError):
        rundir.safe_run_dir(tmp_path, name)


def test_safe_run_dir_refuses_escaping_symlink_and_missing_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (runs / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        rundir.safe_run_dir(runs, "link")
    with pytest.raises(LookupError):
        rundir.safe_run_dir(runs, "missing")
    (runs / "ok-run_1.2").mkdir()
    assert rundir.safe_run_dir(runs, "ok-run_1.2") == runs.resolve() / "ok-run_1.2"


def test_files_and_predictions(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r")
    assert rundir.read_run_info(run).arch == "tiny_linear"
    classes = rundir.read_classes(run)
    assert classes[0] == (0, "n02123045", "tabby")
    labels, paths = rundir.read_val_index(run)
    assert labels.shape == (20,) and paths[3] == "val/3.png"
    assert rundir.prediction_epochs(run) == [1, 2]
    assert rundir.model_epochs(run) == [1, 2]
    top5, prob = rundir.load_predictions(run, 2, num_rows=20, num_classes=10)
    assert top5.shape == prob.shape == (20, 5) and top5.dtype == np.int64
    with pytest.raises(ValueError, match="rows"):
        rundir.load_predictions(run, 2, num_rows=21)
    with pytest.raises(LookupError):
        rundir.load_predictions(run, 9)
    # more than four digits are epochs too; dot-names are temporaries
    (run / "models" / "epoch-10000.onnx").write_bytes(b"")
    (run / "models" / ".epoch-0003.onnx.tmp-1").write_bytes(b"")
    assert rundir.model_epochs(run) == [1, 2, 10000]


def test_bad_predictions_are_refused(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r")
    with (run / "predictions" / "epoch-0001.npz").open("wb") as f:
        np.savez(f, top5=np.zeros((20, 4), np.int16), prob=np.zeros((20, 4), np.float16))
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        rundir.load_predictions(run, 1)
    with (run / "predictions" / "epoch-0002.npz").open("wb") as f:
        np.savez(f, top5=np.array([object()] * 5).reshape(1, 5), prob=np.zeros((1, 5)))
    with pytest.raises(ValueError):  # object arrays need pickle, which is refused
        rundir.load_predictions(run, 2)


# --- what a training-page poll sends ----------------------------------------------------------
def test_poll_sends_nothing_when_nothing_changed_and_patches_a_new_epoch(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", state=None)
    provider = Runs(tmp_path)
    first = live.poll(provider, ["r"], None)
    assert first.full and first.panels["accuracy"] is not None
    again = live.poll(provider, ["r"], first.state)
    assert again.empty and not again.full
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(epoch_event(3, 1_764_000_100.0, 0.3)) + "\n")
    grown = live.poll(provider, ["r"], again.state)
    assert not grown.full
    ops = grown.panels["accuracy"].to_plotly_json()["operations"]
    extends = [op for op in ops if op["operation"] == "Extend"]
    assert extends and all(op["params"]["value"] in ([3], [0.3], [0.27], [0.6], [0.55])
                           for op in extends)  # fmt: skip
    assert grown.panels["steps"] is None  # no new steps: that figure is left alone
    assert grown.progress[0]["epoch"] == 3
    assert live.poll(provider, ["r"], grown.state).empty


def test_poll_redraws_after_a_resume_or_truncation(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", state=None)
    provider = Runs(tmp_path)
    state = live.poll(provider, ["r"], None).state
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(epoch_event(2, 1_764_000_100.0, 0.5)) + "\n")  # epoch 2 redone
    redone = live.poll(provider, ["r"], state)
    assert redone.full
    acc = redone.panels["accuracy"]
    val_top5 = next(t for t in acc.data if t.meta == "r/val_top5")
    assert list(val_top5.x) == [1, 2] and val_top5.y[-1] == pytest.approx(0.75)
    (run / "metrics.jsonl").write_text(json.dumps(epoch_event(1, 1.0, 0.1)) + "\n")
    assert live.poll(provider, ["r"], redone.state).full


def test_first_points_draw_the_panel_whole_then_patches(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=0, state=None)
    provider = Runs(tmp_path)
    first = live.poll(provider, ["r"], None)
    assert "accuracy" in first.state["empty"]
    assert first.panels["accuracy"].layout.annotations[-1].text == "no data yet"
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(epoch_event(1, 1_764_000_010.0, 0.1)) + "\n")
    drawn = live.poll(provider, ["r"], first.state)
    fig = drawn.panels["accuracy"]
    assert not drawn.full and fig.__class__.__name__ == "Figure"  # only this panel, whole
    assert all(a.text != "no data yet" for a in fig.layout.annotations)
    assert drawn.panels["steps"] is None and "accuracy" not in drawn.state["empty"]
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(epoch_event(2, 1_764_000_020.0, 0.2)) + "\n")
    patched = live.poll(provider, ["r"], drawn.state)
    assert patched.panels["accuracy"].__class__.__name__ == "Patch"


def test_run_picker_names_width_and_a_small_stem():
    from epochscope.reader import arch_label
    from epochscope.records import DataInfo, RunInfo

    def info(**kw) -> RunInfo:
        return RunInfo(name="r", engine="pytorch", engine_version="2", arch="resnet18_v2",
                       epochs=1, batch_size=1, data=DataInfo("/d", "x", 10, 1, 1),
                       preprocess=None, **kw)  # fmt: skip

    assert arch_label(info()) == "resnet18_v2"
    assert arch_label(info(width=0.25, hparams={"stem": "small"})) == "resnet18_v2 x0.25 small stem"
    assert arch_label(info(hparams={"stem": "imagenet"})) == "resnet18_v2"
