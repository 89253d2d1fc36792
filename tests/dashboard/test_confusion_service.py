"""The page's data path on a synthetic run directory: views, cells, drill-down, exports."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.synthetic_runs import write_run
from dashboard.confusion import data, export, service
from dashboard.kit import images as kit_images


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    data.clear()
    root = tmp_path / "data"
    run = write_run(tmp_path / "runs" / "synth", num_classes=30, per_class=6, epochs=3,
                    data_root=root)  # fmt: skip
    # real images for the first class only: the others have no file (no thumbnail, no error)
    labels, paths = data.run(run).labels, data.run(run).paths
    for lab, rel in zip(labels, paths, strict=True):
        if lab == 0:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), (0, 120, 0)).save(root / rel)
    return run


def test_matrix_view_of_the_whole_matrix_and_a_zoom(run_dir: Path) -> None:
    view = service.matrix_view(data.run(run_dir), 3, "top5", "wordnet", "eq_hist", (0, 30), (0, 30))
    assert view.figure["layout"]["images"][0]["sizex"] == 30
    assert view.grid.dx == 1 and view.grid.nx == 30
    assert 0 < view.top1 <= 1
    zoom = service.matrix_view(data.run(run_dir), 3, "top5", "wordnet", "log", (5, 10), (5, 10))
    assert zoom.figure["layout"]["images"][0]["sizex"] == 5
    assert service.reply_size(view) < 300_000


def test_cell_at_names_the_classes_under_the_pointer(run_dir: Path) -> None:
    view = service.matrix_view(data.run(run_dir), 3, "top5", "index", "linear", (0, 30), (0, 30))
    cell = service.cell_at(data.run(run_dir), 3, "top5", "index", view.grid, 4.5, 7.5)
    assert (cell.true, cell.pred) == (7, 4) and not cell.grouped  # rows are true classes
    conf = data.run(run_dir).confusion(3, "top5")
    assert cell.count == conf.count(7, 4) and cell.images == 6
    # WordNet order: the slot's class comes from the order
    order = data.run(run_dir).order("wordnet")
    cell = service.cell_at(data.run(run_dir), 3, "top5", "wordnet", view.grid, 0.5, 2.5)
    assert (cell.true, cell.pred) == (int(order[2]), int(order[0]))
    assert service.cell_at(data.run(run_dir), 3, "top5", "wordnet", view.grid, 0.7, 2.5) is None


def test_a_grouped_cell_names_its_largest_count(tmp_path: Path) -> None:
    data.clear()
    run = write_run(tmp_path / "big", num_classes=300, per_class=2, epochs=1)
    view = service.matrix_view(data.run(run), 1, "top1", "index", "linear", (0, 300), (0, 300))
    assert view.grid.dx == 3  # 300 classes over at most 100 hover cells
    conf = data.run(run).confusion(1, "top1")
    dense = conf.dense()
    cell = service.cell_at(
        data.run(run), 1, "top1", "index", view.grid, 1.5, 1.5
    )  # classes 0-2 x 0-2
    assert cell.grouped and cell.count == dense[:3, :3].max() > 0
    assert dense[cell.true, cell.pred] == cell.count and cell.true < 3 and cell.pred < 3


def test_drill_down_lists_the_cell_images_with_thumbnails_when_reachable(
    run_dir: Path, monkeypatch
) -> None:
    monkeypatch.setenv("EPOCHSCOPE_DATA_ROOTS", str(run_dir.parent.parent / "data"))
    top5, _ = data.run(run_dir).predictions(3)
    labels = data.run(run_dir).labels
    for true in (0, 1):
        images = service.drill(data.run(run_dir), 3, "top5", true, true)
        expected = int(((labels == true)[:, None] & (top5 == true)).any(axis=1).sum())
        assert len(images) == expected
        assert all(labels[im.row] == true and true in [k for k, _, _ in im.top5] for im in images)
        has_thumbs = {im.thumbnail is not None for im in images}
        assert has_thumbs <= ({True} if true == 0 else {False})


def test_drill_down_reads_only_allowed_roots(run_dir: Path, monkeypatch) -> None:
    """data.root outside every allowed root: no thumbnail, and a note that says what to do."""
    root = run_dir.parent.parent / "data"
    monkeypatch.delenv("EPOCHSCOPE_DATA_ROOTS", raising=False)
    source = kit_images.thumbnail_source(data.run(run_dir))
    assert source.root is None and str(root) in source.note and "--data-root" in source.note
    assert all(im.thumbnail is None for im in service.drill(data.run(run_dir), 3, "top5", 0, 0))
    # a parent of the data root allows it; a sibling does not
    monkeypatch.setenv("EPOCHSCOPE_DATA_ROOTS", f"{run_dir.parent}:{root.parent}")
    assert kit_images.thumbnail_source(data.run(run_dir)).root == root.resolve()
    monkeypatch.setenv("EPOCHSCOPE_DATA_ROOTS", f"{root}-other:relative/path")
    assert kit_images.thumbnail_source(data.run(run_dir)).root is None


def test_drill_down_uses_thumbnails_stored_in_the_run(run_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv("EPOCHSCOPE_DATA_ROOTS", raising=False)
    meta = data.run(run_dir)
    rel = meta.paths[int(np.flatnonzero(meta.labels == 1)[0])]
    (run_dir / "thumbnails" / rel).parent.mkdir(parents=True)
    Image.new("RGB", (16, 16), (0, 0, 200)).save(run_dir / "thumbnails" / rel, format="PNG")
    source = kit_images.thumbnail_source(data.run(run_dir))
    assert source.root == run_dir / "thumbnails" and source.note is None
    images = service.drill(data.run(run_dir), 3, "top5", 1, 1)
    assert [im.path for im in images if im.thumbnail] == [rel]


def test_pairs_table_rows(run_dir: Path) -> None:
    rows = service.pairs(data.run(run_dir), 3, "top1", None, limit=5)
    assert 0 < len(rows) <= 5
    assert all(r["true_index"] != r["pred_index"] for r in rows)
    assert [r["count"] for r in rows] == sorted((r["count"] for r in rows), reverse=True)


def test_a_rewritten_epoch_is_read_again(run_dir: Path) -> None:
    before = data.run(run_dir).confusion(1, "top1")
    path = run_dir / "predictions" / "epoch-0001.npz"
    labels = data.run(run_dir).labels
    top5 = np.tile(labels[:, None], (1, 5)).astype(np.int16)  # a perfect model
    np.savez(path, top5=top5, prob=np.ones_like(top5, dtype=np.float16))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = data.run(run_dir).confusion(1, "top1")
    assert after is not before
    assert after.diagonal().sum() == len(labels)


def test_export_cli_writes_png_and_gif(run_dir: Path, tmp_path: Path) -> None:
    png, gif = tmp_path / "m.png", tmp_path / "m.gif"
    assert export.main([str(run_dir), "--png", str(png), "--gif", str(gif), "--size", "300"]) == 0
    img = Image.open(png)
    assert img.format == "PNG" and img.width >= 300 + export.LEFT
    anim = Image.open(io.BytesIO(gif.read_bytes()))
    assert anim.format == "GIF" and anim.n_frames == 3
    assert export.main([str(run_dir / "nope")]) == 1


def test_the_pages_export_of_its_view_is_a_png_of_its_epoch_or_a_gif_of_all(
    run_dir: Path,
) -> None:
    r = data.run(run_dir)
    view = {"epoch": 2, "x": [0.0, 10.0], "y": [5.0, 15.0]}
    png, name = export.view_file(r, view, "top1", "index", "log", False, 60)
    assert name == "synth-epoch0002-top1-index.png"
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width >= 1000 + export.LEFT  # 1000-2000 matrix pixels
    gif, name = export.view_file(r, view, "top5", "wordnet", "eq_hist", True, 2)
    assert name == "synth-top5-wordnet-epochs.gif"
    assert Image.open(io.BytesIO(gif)).n_frames == 2  # the first and last of 3 epochs


def test_gif_export_is_bounded_in_frames_and_one_at_a_time(tmp_path: Path) -> None:
    data.clear()
    run = write_run(tmp_path / "long", num_classes=20, per_class=3, epochs=25)
    assert export.sample_epochs(list(range(1, 26)), 6) == [1, 6, 11, 15, 20, 25]
    assert export.sample_epochs([1, 2, 3], 6) == [1, 2, 3]
    r = data.run(run)
    gif, chosen = export.bounded_gif(r, r.epochs, "top5", "index", "linear", None, None,
                                     max_frames=5, size=200)  # fmt: skip
    assert chosen[0] == 1 and chosen[-1] == 25 and len(chosen) == 5
    anim = Image.open(io.BytesIO(gif))
    assert anim.n_frames == 5
    # a second export in the same worker waits for the first, then gives up
    assert export.GIF_EXPORTS.acquire(timeout=1)
    try:
        with pytest.raises(TimeoutError):
            export.bounded_gif(data.run(run), [1, 2], "top5", "index", "linear", None, None, 5, 200,
                               wait=0.1)  # fmt: skip
    finally:
        export.GIF_EXPORTS.release()
