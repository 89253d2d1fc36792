"""Every byte read from a run directory goes through the bounded reader (epochscope.layout):
regular files only, opened without blocking, a cap per kind of file, no link out of the run;
metrics.jsonl in chunks with a capped tail; npz headers checked before inflating; hierarchy
depth capped; preprocess sizes limited. Each test plants the damage on a real run directory."""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import tracemalloc
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from epochscope import layout, reader, thumbnails
from epochscope.hierarchy import MAX_DEPTH, Taxonomy, read_hierarchy
from epochscope.images import image_source, safe_image_path
from epochscope.records import MAX_PREPROCESS_SIDE, RunInfo
from tests.support import make_fake_run


def _within(seconds: float, fn: Callable[[], object]) -> object:
    """fn's result, failing (not hanging) when it takes longer than ``seconds``."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn} still blocked after {seconds} s"
    return out[0]


# --- links, kinds of file, caps -----------------------------------------------------------------
def test_a_link_out_of_the_run_is_refused_and_one_inside_is_read(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "runs", "r", epochs_done=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(run / "classes.tsv", elsewhere / "classes.tsv")
    (run / "classes.tsv").symlink_to(elsewhere / "classes.tsv")
    with pytest.raises(ValueError, match="leads out of its run directory"):
        reader.read_classes(run)
    (run / "classes.tsv").unlink()
    (run / "meta").mkdir()
    shutil.move(elsewhere / "classes.tsv", run / "meta" / "classes.tsv")
    (run / "classes.tsv").symlink_to("meta/classes.tsv")  # a link that stays inside: read
    assert len(reader.read_classes(run)) == 10


@pytest.mark.parametrize("name", [layout.RUN_JSON, layout.CLASSES_TSV, layout.VAL_INDEX_TSV])
def test_a_file_over_its_cap_is_refused_unread(tmp_path: Path, name: str) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    with (run / name).open("r+b") as f:
        f.truncate(layout.CAPS[name] + 1)  # sparse: costs no disk
    read = {layout.RUN_JSON: reader.read_run_info, layout.CLASSES_TSV: reader.read_classes,
            layout.VAL_INDEX_TSV: reader.read_val_index}[name]  # fmt: skip
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"over the \d+ MiB a reader accepts for {name}"):
            read(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated to refuse it"


def test_every_run_file_has_a_cap() -> None:
    for name in (*layout.FILE_NAMES[:6], layout.DEMO_MARKER):
        assert layout.cap_of(name) > 0, name
    assert layout.cap_of("predictions/epoch-0003.npz") == layout.CAPS["predictions/epoch-NNNN.npz"]
    assert layout.cap_of("models/epoch-12345.onnx") == layout.CAPS["models/epoch-NNNN.onnx"]


# --- metrics.jsonl: chunks and a capped tail ----------------------------------------------------
def test_a_sparse_metrics_log_is_read_in_chunks_with_a_capped_tail(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    path = run / "metrics.jsonl"
    good = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(good + (64 << 20))  # a 64 MB hole without a newline: an unterminated tail
    log = reader.MetricsLog(path)
    tracemalloc.start()
    try:
        first = log.refresh()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [e["kind"] for e in first][-1] == "status" and log.position == good
    assert len(log.partial) <= reader.MAX_LINE and log.skipping
    assert peak < 3 * reader.MAX_LINE, f"{peak / 2**20:.0f} MiB to read a 64 MB hole"
    line = json.dumps({"kind": "epoch", "time": 2e9, "epoch": 2, "val_top5": 0.75}) + "\n"
    with path.open("ab") as f:
        f.write(b"\n" + line.encode())  # the long line ends; a good one follows
    (new,) = log.refresh()
    assert new["epoch"] == 2 and log.ends[-1] == path.stat().st_size
    assert log.garbage_lines == 1 and log.partial == b"" and not log.skipping
    # the run picker's digest reads the same file the same way
    (summary,) = reader.list_runs(tmp_path, summaries=reader.SummaryCache())
    assert summary.epochs_done == 2 and summary.best_val_top5 == 0.75


# --- predictions: the npy header before anything is inflated ------------------------------------
def _claiming(rows: int, path: Path, actual_rows: int | None = None) -> None:
    """An npz whose top5 header declares ``rows`` x 5 int32 (zeros, deflated)."""
    header = f"{{'descr': '<i4', 'fortran_order': False, 'shape': ({rows}, 5), }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    npy += bytes(5 * 4 * (rows if actual_rows is None else actual_rows))
    prob = BytesIO()
    np.lib.format.write_array(prob, np.zeros((20, 5), np.float32))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("top5.npy", npy)
        z.writestr("prob.npy", prob.getvalue())


def test_an_npz_declaring_too_many_rows_is_refused_before_inflating(tmp_path, monkeypatch):
    run = make_fake_run(tmp_path, "r", epochs_done=2)
    npz = run / "predictions" / "epoch-0001.npz"
    _claiming(2_000_000, npz)  # 40 MB of int32 zeros, ~40 KB deflated
    assert npz.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="declares 2,000,000 rows, more than 20"):
            reader.load_predictions(run, 1, num_rows=20)
        monkeypatch.setattr(reader, "MAX_PREDICTION_ROWS", 1_000_000)
        with pytest.raises(ValueError, match="more than 1,000,000"):
            reader.load_predictions(run, 1)  # the row count not known: the global cap
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"{peak / 2**20:.0f} MiB allocated to refuse it"
    _claiming(20, npz, actual_rows=3)  # a header that the member's size contradicts
    with pytest.raises(ValueError, match="not what its header says"):
        reader.load_predictions(run, 1, num_rows=20)
    top5, prob = reader.load_predictions(run, 2, num_rows=20, num_classes=10)  # a good one
    assert top5.shape == prob.shape == (20, 5) and top5.dtype == np.int64


def test_label_arrays_declaring_too_many_rows_are_refused_before_inflating(tmp_path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    npz = run / "predictions" / "epoch-0001.npz"
    with np.load(npz) as f:
        kept = {k: f[k] for k in f.files}
    small = {n: np.zeros(20, np.float32) for n in ("margin", "entropy", "confidence")}
    big = BytesIO()  # p_label claims 20,000,000 floats (80 MB), deflated to ~80 KB
    np.lib.format.write_array(big, np.zeros(20_000_000, np.float32))
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as z:
        for name, a in {**kept, **small, "confidence_scaled": small["margin"],
                        "temperature": np.float32(1.0)}.items():  # fmt: skip
            buf = BytesIO()
            np.lib.format.write_array(buf, np.asarray(a))
            z.writestr(f"{name}.npy", buf.getvalue())
        z.writestr("p_label.npy", big.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"p_label \[20000000\] must be 20 floats"):
            reader.load_label_stats(run, 1, num_rows=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"{peak / 2**20:.0f} MiB allocated to refuse it"


# --- hierarchy: depth capped, distances without every node's ancestors -------------------------
def _chain(run: Path, depth: int) -> None:
    wnids = [line.split("\t")[1] for line in (run / "classes.tsv").read_text().splitlines()[1:]]
    rows = ["id\tparent\tname", "c0\t\troot"]
    rows += [f"c{i}\tc{i - 1}\tlevel {i}" for i in range(1, depth)]
    rows += [f"{w}\tc{depth - 1}\t{w}" for w in wnids]
    (run / "hierarchy.tsv").write_text("\n".join(rows) + "\n")


def test_a_hierarchy_deeper_than_the_cap_is_refused(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    _chain(run, 6000)  # ~80 KB: ~975 MiB of ancestor tables before
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"over {MAX_DEPTH} levels deep"):
            read_hierarchy(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB to refuse a 6,000-node chain"
    _chain(run, MAX_DEPTH)  # the deepest accepted: classes MAX_DEPTH links below the root
    tax = read_hierarchy(run)
    wnid = reader.read_classes(run)[0][1]
    assert tax.distance(wnid, "c0") == MAX_DEPTH
    d = tax.distance_matrix([w for _, w, _ in reader.read_classes(run)] + ["unknown"])
    assert d[0, 1] == 2 and d[0, 0] == 0 and d[0, -1] == 255


def test_a_hierarchy_link_out_of_the_run_is_refused(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "runs", "r", epochs_done=1)
    _chain(run, 3)
    shutil.move(run / "hierarchy.tsv", tmp_path / "hierarchy.tsv")
    (run / "hierarchy.tsv").symlink_to(tmp_path / "hierarchy.tsv")
    with pytest.raises(ValueError, match="leads out"):
        read_hierarchy(run)
    assert len(Taxonomy.read(tmp_path / "hierarchy.tsv")) == 13  # read as a plain path: fine


# --- preprocess sizes ---------------------------------------------------------------------------
def test_preprocess_sizes_over_1024_px_are_refused_with_the_fix(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    info = json.loads((run / "run.json").read_text())
    info["preprocess"].update(image_size=MAX_PREPROCESS_SIDE, resize_size=MAX_PREPROCESS_SIDE)
    assert RunInfo.from_dict(info).preprocess.resize_size == 1024
    info["preprocess"].update(image_size=8192, resize_size=8192)
    with pytest.raises(ValueError, match="8192 px, over the 1024 px a classifier needs") as e:
        RunInfo.from_dict(info)
    assert "1024 px or less" in str(e.value)


# --- demo.json and thumbnails.bin: never a FIFO, a device or a link out -------------------------
@pytest.mark.parametrize("damage", ["fifo", "zero"])
def test_demo_marker_and_thumbnails_never_block_or_read_without_end(tmp_path, damage) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    for target in (run / "demo.json", run / "thumbnails.bin"):
        os.mkfifo(target) if damage == "fifo" else target.symlink_to("/dev/zero")
    assert _within(5, lambda: reader.is_synthetic_dataset(run)) is False
    assert _within(5, lambda: thumbnails.read_thumbnail(run, 0)) is None
    assert _within(5, lambda: thumbnails.thumbnail_count(run)) == 0
    (run / "demo.json").unlink()
    (run / "demo.json").write_text(json.dumps({"synthetic": True}))  # the control
    assert reader.is_synthetic_dataset(run) is True


def test_a_thumbnails_file_linked_from_outside_the_run_is_not_read(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "runs", "r", epochs_done=1)
    blob = thumbnails.thumbnails_bytes(np.zeros((3, 8, 8, 3), np.uint8))
    (tmp_path / "thumbnails.bin").write_bytes(blob)
    (run / "thumbnails.bin").symlink_to(tmp_path / "thumbnails.bin")
    assert thumbnails.read_thumbnail(run, 0) is None and thumbnails.thumbnail_count(run) == 0
    (run / "thumbnails.bin").unlink()
    (run / "thumbnails.bin").write_bytes(blob)
    assert thumbnails.read_thumbnail(run, 0)[:3] == b"\xff\xd8\xff"


def test_a_thumbnails_folder_linked_to_slash_is_no_image_source(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "runs", "r", epochs_done=1)
    (run / "thumbnails").symlink_to("/")
    source = image_source(run, "/nowhere", [])
    assert source.root is None
    (run / "thumbnails").unlink()
    (run / "pictures").mkdir()
    (run / "pictures" / "a.png").write_bytes(b"x")
    (run / "thumbnails").symlink_to("pictures")  # a link that stays inside the run: used
    source = image_source(run, "/nowhere", [])
    assert source.root == (run / "pictures").resolve()
    assert safe_image_path(str(source.root), "a.png") == (run / "pictures" / "a.png").resolve()


def test_a_written_line_longer_than_the_cap_is_skipped_to_its_end(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "r", epochs_done=1)
    path = run / "metrics.jsonl"
    before = len(reader.MetricsLog(path).refresh() or [])
    line = json.dumps({"kind": "epoch", "time": 2e9, "epoch": 2, "val_top5": 0.75}) + "\n"
    with path.open("ab") as f:  # real bytes, not a hole: read and dropped chunk by chunk
        f.write(b'{"kind": "status", "error": "' + b"x" * (reader.MAX_LINE + 1) + b'"}\n')
        f.write(line.encode())
    log = reader.MetricsLog(path)
    events = log.refresh()
    assert len(events) == before + 1 and events[-1]["epoch"] == 2
    assert log.garbage_lines == 1 and log.ends[-1] == path.stat().st_size
    (summary,) = reader.list_runs(tmp_path, summaries=reader.SummaryCache())
    assert summary.epochs_done == 2 and summary.state == "finished"


def test_a_folder_linked_out_of_the_run_is_refused_for_the_files_under_it(tmp_path) -> None:
    run = make_fake_run(tmp_path / "runs", "r", epochs_done=1)
    shutil.move(run / "predictions", tmp_path / "predictions")
    (run / "predictions").symlink_to(tmp_path / "predictions")  # each file a plain file
    with pytest.raises(ValueError, match="leads out of its run directory"):
        reader.load_predictions(run, 1, num_rows=20)
    (run / "predictions").unlink()
    (run / "kept").mkdir()
    shutil.move(tmp_path / "predictions", run / "kept" / "predictions")
    (run / "predictions").symlink_to("kept/predictions")  # a folder link inside the run: read
    assert reader.load_predictions(run, 1, num_rows=20)[0].shape == (20, 5)
    (run / "run.json").unlink()
    (run / "run.json").symlink_to("run.json")  # a link to itself: refused, never followed
    with pytest.raises(ValueError, match="cannot be opened"):
        reader.read_run_json(run)
