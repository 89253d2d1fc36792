"""The run picker at scale: summaries cached per run and refreshed only when a run's files
change, a bounded metrics cache, de-duplicated and capped selections, and a metrics reader that
keeps the rest of a chunk when one line raises. (Speed: bench/runs_picker_bench.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dashboard import shell
from epochscope import reader
from epochscope.lock import RunLock
from epochscope.run import Run
from tests.support import epoch_event, make_fake_run


def _fresh() -> reader.SummaryCache:
    return reader.SummaryCache()


def test_cached_summaries_equal_fresh_ones(tmp_path: Path) -> None:
    for n, state in enumerate(["finished", "failed", None, "stopped"]):
        small = {"width": 0.25, "hparams": {"stem": "small"}} if n == 1 else {}
        make_fake_run(tmp_path, f"r{n}", epochs_done=n + 1, state=state, started=1e9 + n, **small)
    odd = tmp_path / "r0" / "metrics.jsonl"  # a line not in the writer's format: the slow path
    with odd.open("a") as f:
        f.write('{"epoch": 9, "kind": "epoch", "val_top5": 0.99}\n{"kind":"status","epoch":9,'
                '"state":"failed","error":"x"}\n')  # fmt: skip
    cached = reader.list_runs(tmp_path, summaries=_fresh())
    fresh = [Run(tmp_path / s.name).summary for s in cached]  # each from its whole log
    assert cached == fresh
    # the architecture as docs/training.md promises, on both paths (they once differed)
    assert next(s for s in cached if s.name == "r1").arch == "tiny_linear x0.25 small stem"
    r0 = next(s for s in cached if s.name == "r0")
    assert (r0.epochs_done, r0.best_val_top5, r0.state, r0.error) == (9, 0.99, "failed", "x")


def test_a_summary_is_refreshed_only_when_the_run_files_change(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=2, state=None)
    cache = _fresh()
    (first,) = reader.list_runs(tmp_path, summaries=cache)
    assert first.epochs_done == 2
    # same inode, size and mtime: not read again, even though the bytes are now different
    path = run / "metrics.jsonl"
    st = path.stat()
    with path.open("r+b") as f:
        f.write(b"x" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reader.list_runs(tmp_path, summaries=cache) == [first]
    # appended: read from where it stopped
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    path.write_text(json.dumps(epoch_event(2, 1.0, 0.2)) + "\n")  # replaced: read again
    (again,) = reader.list_runs(tmp_path, summaries=cache)
    assert again.epochs_done == 2 and again.best_val_top5 == epoch_event(2, 1.0, 0.2)["val_top5"]
    with path.open("a") as f:
        f.write(json.dumps(epoch_event(3, 2.0, 0.3)) + "\n")
    (grown,) = reader.list_runs(tmp_path, summaries=cache)
    assert grown.epochs_done == 3
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "arch": "resnet50_v2"}))
    assert reader.list_runs(tmp_path, summaries=cache)[0].arch == "resnet50_v2"


def test_a_running_run_is_probed_each_poll_without_a_file_change(tmp_path: Path) -> None:
    """Its trainer dies: the lock goes, no file changes, and the picker says stopped."""
    run = make_fake_run(tmp_path, "live", epochs_done=1, state=None)
    lock = RunLock(run / "run.lock")
    lock.acquire()
    cache = _fresh()
    try:
        assert reader.list_runs(tmp_path, summaries=cache)[0].state == "running"
    finally:
        lock.release()
    assert reader.list_runs(tmp_path, summaries=cache)[0].state == "crashed"


def test_new_and_removed_runs_appear_and_go(tmp_path: Path) -> None:
    cache = _fresh()
    make_fake_run(tmp_path, "a", epochs_done=1)
    assert [s.name for s in reader.list_runs(tmp_path, summaries=cache)] == ["a"]
    make_fake_run(tmp_path, "b", epochs_done=1, started=2e9)
    assert [s.name for s in reader.list_runs(tmp_path, summaries=cache)] == ["b", "a"]
    (tmp_path / "a" / "run.json").unlink()
    assert [s.name for s in reader.list_runs(tmp_path, summaries=cache)] == ["b"]


def test_the_metrics_cache_is_bounded(tmp_path: Path) -> None:
    runs = [make_fake_run(tmp_path, f"r{n}", epochs_done=2) for n in range(10)]
    cache = reader.MetricsCache(size=3)
    first = cache.get(runs[0])
    ends, events = list(first.ends), len(first.events)
    for run in runs[1:]:
        cache.get(run)
    assert len(cache) == 3
    again = cache.get(runs[0])  # evicted, read again: the same byte positions
    assert again is not first and again.ends == ends and len(again.events) == events


def test_a_line_that_raises_keeps_the_rest_of_its_chunk(tmp_path: Path, monkeypatch) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1, state=None)
    path = run / "metrics.jsonl"
    log = reader.MetricsLog(path)
    log.refresh()
    before = len(log.events)
    with path.open("a") as f:
        for e in (2, 3, 4):
            f.write(json.dumps(epoch_event(e, 10.0 + e, 0.1 * e)) + "\n")
    parse = reader.parse_event_line

    def explosive(line: bytes, *args):
        if b'"epoch": 2' in line:
            raise RuntimeError("a reader bug or a line nobody thought of")
        return parse(line, *args)

    monkeypatch.setattr(reader, "parse_event_line", explosive)
    new = log.refresh()
    assert [e["epoch"] for e in new] == [3, 4]  # epoch 2 skipped, 3 and 4 kept
    assert len(log.events) == before + 2 and log.position == path.stat().st_size


def test_selections_are_deduplicated_and_capped(monkeypatch) -> None:
    assert shell.selection(["a", "b", "a", 3, None, "c", "b"]) == (["a", "b", "c"], None)
    assert shell.selection("a") == ([], None) and shell.selection(None) == ([], None)
    monkeypatch.setenv("EPOCHSCOPE_MAX_RUNS", "2")
    names, note = shell.selection([f"r{i}" for i in range(10_000)])
    assert names == ["r0", "r1"] and "first 2 of 10000" in note
    assert shell.runs_from_search("?run=a&run=b&run=c&run=a") == ["a", "b"]


@pytest.mark.parametrize("damage", ["fifo", "zero"])
def test_readers_never_block_on_odd_files(tmp_path: Path, damage: str) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    for name in ("run.json", "metrics.jsonl", "classes.tsv"):
        (run / name).unlink()
        os.mkfifo(run / name) if damage == "fifo" else (run / name).symlink_to("/dev/zero")
    # a FIFO is not a regular file; a link to /dev/zero leads out of the run first
    refused = "not a regular file" if damage == "fifo" else "leads out of its run directory"
    with pytest.raises(ValueError, match=refused):
        reader.read_run_json(run)
    with pytest.raises(ValueError, match=refused):
        reader.read_classes(run)
    assert reader.MetricsLog(run / "metrics.jsonl").refresh() == []
    assert reader.list_runs(tmp_path, summaries=_fresh())[0].problem
