"""python -m epochscope import timm / tensorboard: real files in, run directories out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import reader
from tests.conftest import run_cli


def _table(run_dir: Path) -> dict[int, dict]:
    return reader.epoch_table(reader.MetricsCache().get(run_dir).events)


def test_help_explains_itself() -> None:
    top = run_cli("epochscope", "--help").stdout
    assert "import" in top and "epochscope.init" in top
    for kind, word in (("timm", "summary.csv"), ("tensorboard", "TensorBoard")):
        assert word in run_cli("epochscope", "import", kind, "--help").stdout


def test_a_folder_of_the_wrong_kind_is_said_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for kind, what in (("timm", "not a timm output folder"),
                       ("tensorboard", "not a TensorBoard log folder")):  # fmt: skip
        proc = run_cli("epochscope", "import", kind, str(tmp_path), "--runs-dir",
                       str(tmp_path / "runs"), check=False)  # fmt: skip
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and what in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _tensorboard_log(logdir: Path) -> None:
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        for step in range(1, 31):
            w.add_scalar("train/loss", 3.0 - step * 0.05, step)
        for epoch in range(1, 4):
            w.add_scalar("val/acc1", 20.0 * epoch, epoch * 10)  # percent
            w.add_scalar("val/acc5", 30.0 * epoch, epoch * 10)
            w.add_scalar("val/loss", 2.0 / epoch, epoch * 10)
            w.add_scalar("lr", 0.1 / epoch, epoch * 10)
            w.add_scalar("samples_per_sec", 100.0 + epoch, epoch * 10)


@pytest.mark.slow
def test_tensorboard_scalars_become_curves(tmp_path: Path) -> None:
    _tensorboard_log(tmp_path / "tb")
    runs = tmp_path / "runs"
    out = run_cli("epochscope", "import", "tensorboard", str(tmp_path / "tb"),
                  "--runs-dir", str(runs), "--name", "tb")  # fmt: skip
    assert "imported" in out.stdout
    table = _table(runs / "tb")
    assert list(table) == [1, 2, 3]
    assert table[2]["val_top1"] == pytest.approx(0.4) and table[3]["val_top5"] == pytest.approx(0.9)
    assert table[1]["val_loss"] == pytest.approx(2.0) and table[3]["lr"] == pytest.approx(0.1 / 3)
    assert table[2]["tb_samples_per_sec"] == pytest.approx(102.0)
    steps = [e for e in reader.MetricsCache().get(runs / "tb").events if e["kind"] == "step"]
    assert len(steps) == 30 and steps[0]["loss"] == pytest.approx(2.95)
    assert [s["epoch"] for s in steps[:11]] == [1] * 10 + [2]  # steps 1-10 lead to epoch 1
    assert epochscope.open_run(runs / "tb").summary.state == "finished"


def test_event_file_reader_checks_crcs(tmp_path: Path) -> None:
    from epochscope.importers.tfevents import crc32c, masked_crc, scalars

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    _tensorboard_log(tmp_path / "tb")
    (path,) = (tmp_path / "tb").glob("*tfevents*")
    good = list(scalars(path))
    assert {s.tag for s in good} >= {"train/loss", "val/acc1"}
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the last record's data: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert len(list(scalars(path))) == len(good) - 1
    assert masked_crc(b"") != crc32c(b"")


def _timm_output(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text(
        "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n"
        "0,2.1,1.9,30.0,70.0,0.1\n1,1.6,1.5,45.5,85.0,0.05\n2,1.2,1.1,60.0,95.0,0.01\n"
    )
    (folder / "args.yaml").write_text(
        "aa: null\nbatch_size: 128\nepochs: 3\nimg_size: 16\nlr: 0.1\n"
        "mean:\n- 0.5\n- 0.5\n- 0.5\nmodel: resnet18\nnum_classes: 3\n"
        "std:\n- 0.25\n- 0.25\n- 0.25\n"
    )


@pytest.mark.slow
def test_timm_output_with_a_topk_file(tmp_path: Path) -> None:
    from PIL import Image

    _timm_output(tmp_path / "out" / "r18-run")
    val = tmp_path / "val"
    rows = ["filename,index"]
    for i, c in enumerate(["cat", "dog", "fox"]):
        (val / c).mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (16, 16), (80 * i, 0, 0)).save(val / c / f"{c}{j}.png")
            # the model gets cat right and takes every dog for a fox
            top = [i, (i + 1) % 3, (i + 2) % 3] if c != "dog" else [2, 1, 0]
            rows.append(f'{c}{j}.png,"{top}"')
    (tmp_path / "topk.csv").write_text("\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    run_cli("epochscope", "import", "timm", str(tmp_path / "out" / "r18-run"),
            "--runs-dir", str(runs), "--topk", str(tmp_path / "topk.csv"),
            "--val-dir", str(val))  # fmt: skip
    run_dir = runs / "r18-run"
    info = reader.read_run_info(run_dir)
    assert (info.arch, info.epochs, info.batch_size) == ("resnet18", 3, 128)
    assert info.preprocess.image_size == 16 and info.preprocess.mean == (0.5, 0.5, 0.5)
    table = _table(run_dir)
    assert list(table) == [1, 2, 3]  # timm's 0-based epochs, 1-based here
    assert table[2]["val_top1"] == pytest.approx(0.455) and table[3]["train_loss"] == 1.2
    assert reader.prediction_epochs(run_dir) == [3]
    top5, _ = reader.load_predictions(run_dir, 3)
    labels, paths = reader.read_val_index(run_dir)
    assert paths[0] == "cat/cat0.png" and labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert top5[:, 0].tolist() == [0, 0, 2, 2, 2, 2]
    assert json.loads((run_dir / "run.json").read_text())["engine"] == "epochscope-api"
    # importing again adds nothing; --resume keeps the epochs
    proc = run_cli("epochscope", "import", "timm", str(tmp_path / "out" / "r18-run"),
                   "--runs-dir", str(runs), check=False)  # fmt: skip
    assert proc.returncode == 2 and "resume" in proc.stderr
    assert np.array_equal(reader.load_predictions(run_dir, 3)[0], top5)


# --- what the real tools write (tests/fixtures, made by make_fixtures.py) ---------------------
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _import_tb(folder: Path, runs: Path, *extra: str, check: bool = True):
    return run_cli("epochscope", "import", "tensorboard", str(folder), "--runs-dir", str(runs),
                   *extra, check=check)  # fmt: skip


def test_add_scalars_train_and_val_stay_separate_series(tmp_path: Path) -> None:
    out = _import_tb(FIXTURES / "tb-add-scalars", tmp_path, "--name", "adds")
    assert "Loss/train -> train_loss" in out.stdout and "Loss/val -> val_loss" in out.stdout
    table = _table(tmp_path / "adds")
    assert [table[e]["train_loss"] for e in (1, 2, 3)] == pytest.approx([2.0, 1.5, 1.0])
    assert [table[e]["val_loss"] for e in (1, 2, 3)] == pytest.approx([2.5, 2.1, 1.7])
    assert table[3]["val_top1"] == pytest.approx(0.5)


def test_step_indexed_tag_beside_epoch_indexed_keeps_every_step(tmp_path: Path) -> None:
    out = _import_tb(FIXTURES / "tb-steps-and-epochs", tmp_path, "--name", "mixed")
    assert "Loss/train -> step loss (237 points)" in out.stdout
    events = reader.MetricsCache().get(tmp_path / "mixed").events
    steps = [e for e in events if e["kind"] == "step"]
    assert len(steps) == 237
    assert [s["step"] for s in steps] == list(range(237))
    # placed by when they were written: 119 before the first validation point, 118 after
    assert [sum(s["epoch"] == e for s in steps) for e in (1, 2)] == [119, 118]
    assert list(_table(tmp_path / "mixed")) == [1, 2]


def test_steps_give_a_per_epoch_train_loss_when_no_tag_does(tmp_path: Path) -> None:
    out = _import_tb(FIXTURES / "tb-steps-and-epochs", tmp_path, "--name", "mean")
    assert "train_loss per epoch: the mean of Loss/train's step points in each epoch" in out.stdout
    table = _table(tmp_path / "mean")
    # make_fixtures.py: Loss/train = 2.3 - 0.005 * step, steps 0-118 then 119-236
    first = np.mean([2.3 - 0.005 * s for s in range(119)])
    second = np.mean([2.3 - 0.005 * s for s in range(119, 237)])
    assert [table[1]["train_loss"], table[2]["train_loss"]] == pytest.approx([first, second])


def test_add_scalars_beside_a_tag_of_the_same_name_are_kept_apart(tmp_path: Path) -> None:
    # add_scalar("Loss/train", ., step) 237 times and add_scalars("Loss", {"train", "val"}, epoch)
    out = _import_tb(FIXTURES / "tb-colliding-names", tmp_path, "--name", "both").stdout
    assert (
        "Loss_train/ tag Loss (add_scalars) and tag Loss/train (add_scalar) would be one series: "
        "kept apart, the add_scalars one as Loss_train/Loss" in out
    )
    assert "Loss_train/Loss -> train_loss (per epoch, 2 points)" in out
    assert "Loss/train -> step loss (237 points)" in out
    events = reader.MetricsCache().get(tmp_path / "both").events
    steps = [e for e in events if e["kind"] == "step"]
    assert [s["step"] for s in steps] == list(range(237))  # as many as the writer wrote
    assert [s["loss"] for s in steps] == pytest.approx([2.3 - 0.005 * s for s in range(237)])
    assert [sum(s["epoch"] == e for s in steps) for e in (1, 2)] == [119, 118]
    table = _table(tmp_path / "both")
    means = [np.mean([2.3 - 0.005 * s for s in r]) for r in (range(119), range(119, 237))]
    assert [table[e]["train_loss"] for e in (1, 2)] == pytest.approx(means)  # add_scalars' own
    assert [table[e]["val_loss"] for e in (1, 2)] == pytest.approx([2.2, 1.9])


def test_lightning_logger_folder_gets_a_name_from_its_path(tmp_path: Path) -> None:
    logdir = FIXTURES / "lightning-project" / "lightning_logs" / "version_0"
    out = _import_tb(logdir, tmp_path)
    assert (tmp_path / "lightning-project-lightning_logs-version_0" / "run.json").is_file()
    assert "train_loss -> step loss" in out.stdout and "epoch -> not imported" in out.stdout
    # the project folder holds one run per version_N: refused, naming the folder to import
    proc = _import_tb(logdir.parent.parent, tmp_path / "r2", check=False)
    assert proc.returncode == 2 and "import each run's folder" in proc.stderr
    assert str(logdir) in proc.stderr


def test_a_failed_import_leaves_no_run_and_the_retry_names_the_flag(tmp_path: Path) -> None:
    from PIL import Image

    _timm_output(tmp_path / "out" / "r18")
    val = tmp_path / "val"
    rows = ["filename,index"]
    for c in ("cat", "dog", "fox"):
        (val / c).mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(val / c / "0000.png")
        rows.append(f'{c}/0000.png,"[7 1 0]"')  # class 7 of 3: refused while writing
    (tmp_path / "bad.csv").write_text("\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    proc = run_cli("epochscope", "import", "timm", str(tmp_path / "out" / "r18"), "--runs-dir",
                   str(runs), "--topk", str(tmp_path / "bad.csv"), "--val-dir", str(val),
                   check=False)  # fmt: skip
    assert proc.returncode == 2 and "outside 0..2" in proc.stderr
    assert list(runs.iterdir()) == []  # no failed run, no temporary folder
    run_cli("epochscope", "import", "timm", str(tmp_path / "out" / "r18"), "--runs-dir", str(runs))
    again = run_cli("epochscope", "import", "timm", str(tmp_path / "out" / "r18"), "--runs-dir",
                    str(runs), check=False)  # fmt: skip
    assert (
        again.returncode == 2 and "--resume" in again.stderr and "resume=True" not in again.stderr
    )
    assert [p.name for p in runs.iterdir()] == ["r18"]


def _val_with_shared_names(val: Path) -> None:
    """An ImageFolder where every class folder has a 0000.png, as many datasets do."""
    from PIL import Image

    for i, c in enumerate(("cat", "dog", "fox")):
        (val / c).mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (16, 16), (80 * i, 0, 0)).save(val / c / f"{j:04d}.png")


def _timm_topk(args: list[str], tmp_path: Path, csv_text: str):
    _timm_output(tmp_path / "out" / "r18")
    _val_with_shared_names(tmp_path / "val")
    (tmp_path / "topk.csv").write_text(csv_text)
    return run_cli("epochscope", "import", "timm", str(tmp_path / "out" / "r18"), "--runs-dir",
                   str(tmp_path / "runs"), "--topk", str(tmp_path / "topk.csv"), "--val-dir",
                   str(tmp_path / "val"), *args, check=False)  # fmt: skip


def test_timm_topk_without_class_indices_is_refused_with_the_flags(tmp_path: Path) -> None:
    # inference.py's default: filename, label (names), prob; no --include-index
    text = "filename,label,prob\n" + "".join(
        f'{c}/{j:04d}.png,"[\'cat\' \'dog\']","[0.6 0.4]"\n' for c in ("cat", "dog", "fox")
        for j in range(2)
    )  # fmt: skip
    proc = _timm_topk([], tmp_path, text)
    assert proc.returncode == 2
    assert "holds no class indices" in proc.stderr and "--include-index --fullname" in proc.stderr
    assert "has no row" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_timm_topk_with_repeated_file_names_is_refused(tmp_path: Path) -> None:
    # --include-index without --fullname: six rows, three of them "0000.png"
    text = "filename,index\n" + "".join(
        f'{j:04d}.png,"[{i} 0 1]"\n' for i in range(3) for j in range(2)
    )
    proc = _timm_topk([], tmp_path, text)
    assert proc.returncode == 2
    assert "repeats 2 file names, 3 times each" in proc.stderr and "--fullname" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_timm_topk_rows_are_matched_by_relative_path(tmp_path: Path) -> None:
    # --fullname --include-index --topk 3, rows in an order of their own
    rows = [(c, j, (i + 1) % 3 if c == "dog" else i) for i, c in enumerate(("cat", "dog", "fox"))
            for j in range(2)]  # fmt: skip
    text = "filename,index,prob\n" + "".join(
        f'{c}/{j:04d}.png,"[{top} {(top + 1) % 3} {(top + 2) % 3}]","[0.5 0.3 0.2]"\n'
        for c, j, top in reversed(rows)
    )
    proc = _timm_topk([], tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    top5, _ = reader.load_predictions(tmp_path / "runs" / "r18", 3)
    labels, paths = reader.read_val_index(tmp_path / "runs" / "r18")
    assert paths == [f"{c}/{j:04d}.png" for c in ("cat", "dog", "fox") for j in range(2)]
    assert top5[:, 0].tolist() == [0, 0, 2, 2, 2, 2]  # every dog taken for a fox
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_resume_swaps_the_whole_run_in_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    _import_tb(FIXTURES / "tb-add-scalars", tmp_path, "--name", "again")
    before = _table(tmp_path / "again")
    out = _import_tb(FIXTURES / "tb-add-scalars", tmp_path, "--name", "again", "--resume")
    assert "imported" in out.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no .import-* left behind
    events = reader.MetricsCache().get(tmp_path / "again").events
    states = [e["state"] for e in events if e["kind"] == "status"]
    assert states == ["started", "finished", "resumed", "finished"]
    after = _table(tmp_path / "again")
    assert list(after) == [1, 2, 3]
    assert [after[e]["val_loss"] for e in after] == [before[e]["val_loss"] for e in before]


# --- timm's own train.py and inference.py (tests/fixtures/timm-test-convnext) ------------------
TIMM = FIXTURES / "timm-test-convnext"


def _file_topk() -> tuple[list[str], np.ndarray, np.ndarray]:
    """inference.py's rows as it wrote them: file names, top-5 indices, top-5 probabilities."""
    import csv
    import re

    with (TIMM / "topk.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["filename"] for r in rows]
    index = np.array([[int(v) for v in re.findall(r"\d+", r["index"])] for r in rows])
    prob = np.array([[float(v) for v in r["prob"].strip("[]").split()] for r in rows])
    return names, index, prob


def _import_timm_fixture(runs: Path, *extra: str) -> str:
    # model_best.pth.tar is train.py's epoch 1 (from 0): epoch 2 here
    return run_cli("epochscope", "import", "timm", str(TIMM), "--runs-dir", str(runs), "--name",
                   "tc", "--topk", str(TIMM / "topk.csv"), "--val-dir", str(TIMM / "val"),
                   "--topk-epoch", "2", *extra).stdout  # fmt: skip


@pytest.mark.slow
def test_timm_fixture_classifier_answers_as_timm_inference(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from dashboard import inference

    out = _import_timm_fixture(tmp_path, "--checkpoint", str(TIMM / "model.onnx"))
    # args.yaml: img_size 32, crop_pct null, interpolation '', mean/std null -> test_convnext's
    # pretrained config: crop_pct 0.95 (Resize(33)), bicubic, mean/std 0.5
    pre = reader.read_run_info(tmp_path / "tc").preprocess
    assert (pre.image_size, pre.resize_size, pre.interpolation) == (32, 33, "bicubic")
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert "crop_pct 0.95 (timm 1.0.31's pretrained config of test_convnext)" in out
    assert "resize_size 33" in out and "(prob column)" in out
    assert "self-check: prepared as the classifier prepares a photo" in out and "WARNING" not in out
    names, index, _ = _file_topk()
    clf = inference.Classifier.for_run(tmp_path / "tc", 2)
    answers = clf.classify([(TIMM / "val" / n).read_bytes() for n in names], k=1)
    top1 = np.array([a[0]["index"] for a in answers])
    assert len(names) == 40 and int((top1 == index[:, 0]).sum()) >= 39


def test_timm_fixture_keeps_the_files_probabilities_and_its_ece(tmp_path: Path) -> None:
    from epochscope.analysis.calibration import ece
    from epochscope.labels import report

    out = _import_timm_fixture(tmp_path)
    assert "probabilities: the file's top-5 probabilities (prob column)" in out
    names, index, prob = _file_topk()
    run = epochscope.open_run(tmp_path / "tc")
    labels, paths = reader.read_val_index(tmp_path / "tc")
    order = [paths.index(n) for n in names]
    top5, stored = reader.load_predictions(tmp_path / "tc", 2)
    assert np.array_equal(top5[order], index)
    np.testing.assert_allclose(stored[order], prob, atol=1e-3)  # float16 in predictions
    correct = index[:, 0] == labels[order]
    from_file = ece(prob[:, 0], correct)
    from_run = report(run, 2)["ece"]
    assert from_run == pytest.approx(from_file, abs=1e-3)
    assert from_run < 0.2  # the file's own probabilities (0.126), not rank weights (0.298)


def test_timm_checkpoint_of_an_unknown_model_is_refused_naming_the_flags(tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(TIMM, out, ignore=shutil.ignore_patterns("val"))
    text = (out / "args.yaml").read_text().replace("model: test_convnext", "model: my_net")
    (out / "args.yaml").write_text(text)
    proc = run_cli("epochscope", "import", "timm", str(out), "--runs-dir", str(tmp_path / "r"),
                   "--val-dir", str(TIMM / "val"), "--checkpoint", str(out / "model.onnx"),
                   check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stdout
    line = proc.stderr.strip()
    assert "'my_net' is not in epochscope's table" in line and "\n" not in line
    assert "pass --crop-pct --interpolation --mean --std" in line
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    # with the flags it imports
    run_cli("epochscope", "import", "timm", str(out), "--runs-dir", str(tmp_path / "r"),
            "--val-dir", str(TIMM / "val"), "--checkpoint", str(out / "model.onnx"),
            "--crop-pct", "0.95", "--interpolation", "bicubic", "--mean", "0.5", "0.5", "0.5",
            "--std", "0.5", "0.5", "0.5")  # fmt: skip
    pre = reader.read_run_info(tmp_path / "r" / "out").preprocess
    assert (pre.resize_size, pre.interpolation) == (33, "bicubic")


def test_timm_table_is_what_timm_says() -> None:
    timm = pytest.importorskip("timm")  # where timm imports (not beside torch 2.13.0+cpu)
    from epochscope.importers.timm_table import lookup

    for name in ("resnet18", "test_convnext", "vit_base_patch16_224", "efficientnet_b0"):
        cfg, ours = timm.models.get_pretrained_cfg(name), lookup(name)
        assert ours is not None and ours.crop_pct == cfg.crop_pct
        assert ours.interpolation == cfg.interpolation and ours.input_size == cfg.input_size
