"""``--exclude`` and ``--relabel``: edit files matched to exactly one training image and class
(nothing guessed), and a real retrain that never sees the excluded images and trains the
relabelled ones with their new labels, recorded in the run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from epochscope.run import Run
from tests.conftest import ENGINE_ARGS, ENGINES, run_cli
from tests.support import read_tsv
from trainer.datasets import DataError, DatasetIndex
from trainer.label_edits import apply


def _index() -> DatasetIndex:
    train = [(f"train/{c}/{i}.png", k) for k, c in enumerate(("n01", "n02", "7")) for i in range(4)]
    return DatasetIndex(Path("/data"), "image-folders", ["n01", "n02", "7"],
                        ["cat", "dog", "bird"], train, [("val/x.png", 0)])  # fmt: skip


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_edits_by_path_index_name_and_the_rankings_csv(tmp_path: Path) -> None:
    index = _index()
    ranking = (
        "index,path,label,suggested,score\n5,train/n02/1.png,1,0,0.9\n0,train/n01/0.png,0,2,0.8\n"
    )
    exclude = _write(tmp_path, "x.txt", "train/n01/3.png\n2\n\n")
    edited, edits = apply(index, exclude, _write(tmp_path, "r.csv", ranking))
    assert edits.excluded == (2, 3) and edited.excluded == (2, 3)
    assert edits.relabelled == ((0, 0, 2), (5, 1, 0))
    assert edited.train[5] == ("train/n02/1.png", 0) and index.train[5][1] == 1  # a copy
    assert [r[:2] for r in edits.rows()] == [[0, "relabel"], [2, "exclude"], [3, "exclude"],
                                             [5, "relabel"]]  # fmt: skip
    # labels by folder name, readable name or index; tab-separated plain lines
    lines = "train/n01/1.png\tdog\ntrain/n01/2.png\tn02\n4\t0\n"
    _, edits = apply(index, None, _write(tmp_path, "plain.tsv", lines))
    assert edits.relabelled == ((1, 0, 1), (2, 0, 1), (4, 1, 0))


@pytest.mark.parametrize(
    ("exclude", "relabel", "message"),
    [
        ("train/n09/0.png\n", None, "line 1: 'train/n09/0.png' is no training image"),
        ("12\n", None, "index 12 is outside 0..11"),
        ("index,path\n1,train/n02/0.png\n", None, "made from another training set"),
        (None, "path,new_label\ntrain/n01/0.png,fish\n", "line 2: label 'fish' matches no"),
        (None, "train/n01/0.png,2,extra\n", "expected 'image,label'"),
        (None, "path,label\ntrain/n01/0.png,2\n", "needs a new_label (or suggested) column"),
        (None, "train/n01/0.png,1\n0,2\n", "given two new labels"),
        ("train/n01/0.png\n", "train/n01/0.png,1\n", "both excluded and relabelled"),
    ],
)
def test_what_cannot_be_matched_exactly_is_refused(
    tmp_path: Path, exclude: str | None, relabel: str | None, message: str
) -> None:
    x = _write(tmp_path, "x.csv", exclude) if exclude is not None else None
    r = _write(tmp_path, "r.csv", relabel) if relabel is not None else None
    with pytest.raises(DataError, match=re.escape(message)):
        apply(_index(), x, r)


def test_a_class_named_like_an_index_is_ambiguous(tmp_path: Path) -> None:
    # class 2's folder is named "7"; "1" is index 1 only, "7" the folder only, but a class
    # named "1" next to index 1 would be two classes: refused rather than guessed
    index = _index()
    index.names[2] = "1"
    with pytest.raises(DataError, match="matches several classes"):
        apply(index, None, _write(tmp_path, "r.txt", "train/n01/0.png,1\n"))
    _, edits = apply(index, None, _write(tmp_path, "ok.txt", "train/n01/0.png,7\n"))
    assert edits.relabelled == ((0, 0, 2),)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_retrain_never_sees_excluded_images_and_trains_the_new_labels(
    engine: str, demo_data: Path, tmp_path: Path
) -> None:
    from trainer.datasets import discover

    train = discover(demo_data).train
    step = len(train) // 80
    excluded = [p for p, _ in train[::step]][:40]
    moved = {p: (y + 1) % 20 for p, y in train[1::step][:30]}  # none of them excluded
    xfile = tmp_path / "exclude.csv"
    with xfile.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "label"])  # a ranking's CSV: its first columns
        w.writerows([[i, p, y] for i, (p, y) in enumerate(train) if p in set(excluded)])
    rfile = tmp_path / "relabel.txt"
    rfile.write_text("".join(f"{p},{y}\n" for p, y in moved.items()))
    runs = tmp_path / "runs"
    out = run_cli("trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs),
                  "--name", "cleaned", "--epochs", "2", "--width", "0.25", "--image-size", "32",
                  "--batch-size", "64", "--workers", "0", "--exclude", str(xfile),
                  "--relabel", str(rfile), *ENGINE_ARGS[engine])  # fmt: skip
    assert "training set: 40 training images excluded, 30 relabelled" in out.stdout + out.stderr
    run = runs / "cleaned"
    info = json.loads((run / "run.json").read_text())
    assert (info["data"]["excluded"], info["data"]["relabelled"]) == (40, 30)
    assert info["hparams"]["exclude"] == str(xfile)
    # the run picker's line says what the cleaned run changed
    assert "40 excluded, 30 relabelled" in Run(run).summary.label()
    rows = read_tsv(run / "train_index.tsv")
    paths = [r["path"] for r in rows]
    assert paths == [p for p, _ in train]  # the rows line up with a run on the same data
    for r in rows:
        assert int(r["label"]) == moved.get(r["path"], dict(train)[r["path"]])
    edits = read_tsv(run / "label_edits.tsv")
    assert sorted(e["edit"] for e in edits) == ["exclude"] * 40 + ["relabel"] * 30
    gone = np.array([paths.index(p) for p in excluded])
    for epoch in (1, 2):
        with np.load(run / "train_stats" / f"epoch-{epoch:04d}.npz") as z:
            p_label, other = z["p_label"], z["other"]
        assert np.isnan(p_label[gone]).all()  # never sampled
        kept = np.setdiff1d(np.arange(len(train)), gone)
        assert np.isnan(p_label[kept]).sum() < 64  # the rest: all but a last partial batch
        relabelled = np.array([paths.index(p) for p in moved])
        new = np.array([moved[paths[i]] for i in relabelled])
        seen = ~np.isnan(p_label[relabelled])
        assert (other[relabelled][seen] != new[seen]).all()  # scored against the new label


@pytest.mark.slow
def test_threshold_samples_train_a_fake_class_that_never_reaches_the_predictions(
    demo_data: Path, tmp_path: Path
) -> None:
    """--threshold-samples 0.1: 80 of the 800 training images train as a 21st class; the run's
    index keeps their labels, its predictions and model have 20 classes, the ranking leaves them
    out and flags by their AUM; a resumed run rebuilds the extra head from its checkpoint."""
    import onnxruntime as ort

    from epochscope import open_run, train_labels
    from trainer.datasets import discover

    train = discover(demo_data).train
    runs = tmp_path / "runs"
    args = ("trainer", "train", "--data", str(demo_data), "--runs-dir", str(runs), "--name",
            "aum", "--width", "0.25", "--image-size", "32", "--batch-size", "64", "--workers",
            "0", "--threshold-samples", "0.1")  # fmt: skip
    out = run_cli(*args, "--epochs", "1")
    assert "80 threshold samples (an extra class)" in out.stdout + out.stderr
    resumed = run_cli(*args, "--epochs", "2", "--resume")  # the head's weights from epoch 1
    assert "epochs 2..2" in resumed.stdout
    run = runs / "aum"
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["threshold_samples"] == 80
    edits = [e for e in read_tsv(run / "label_edits.tsv") if e["edit"] == "threshold"]
    assert len(edits) == 80 and {e["label"] for e in edits} == {"20"}
    rows = np.array([int(e["row"]) for e in edits])
    index = read_tsv(run / "train_index.tsv")
    assert [int(r["label"]) for r in index] == [y for _, y in train]  # the given labels kept
    assert all(int(e["from"]) == train[int(e["row"])][1] for e in edits)
    with np.load(run / "predictions" / "epoch-0002.npz") as z:
        assert z["top5"].max() < 20  # the fake class never predicted
    session = ort.InferenceSession(str(run / "models" / "epoch-0002.onnx"))
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert session.run(None, {"input": x})[0].shape == (1, 20)
    for epoch in (1, 2):
        with np.load(run / "train_stats" / f"epoch-{epoch:04d}.npz") as z:
            assert z["other"].max() <= 20 and (~np.isnan(z["p_label"][rows])).sum() > 60
    r = open_run(run)
    issues = r.training_label_issues()
    assert len(issues) == 800 - 80 and not set(issues["index"]) & set(rows.tolist())
    at = train_labels.cut(r)
    d = train_labels.dynamics(r)
    assert at == pytest.approx(float(np.percentile(d.aum[rows], 99)))
    assert issues["flagged"].tolist() == (issues["aum"] <= at).tolist()
    assert (issues["suggested"] < 20).all()
    assert (r.data_map()["suggested"] < 20).all()  # the fake class is never a suggestion
