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
