"""The hyper-parameter table's rows, the picker's search text, and how the classifier page
tells a run trained on the synthetic demo data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dashboard.classify.results import trained_on_synthetic
from dashboard.training.hparams import hparam_rows, run_hparams, search_text
from epochscope import Runs
from epochscope.reader import is_synthetic_dataset
from epochscope.records import DataInfo


def test_rows_mark_what_differs_and_list_it_first() -> None:
    rows = hparam_rows(
        {"a": {"lr": 0.1, "arch": "r18", "milestones": [10, 20]}, "b": {"lr": 0.05, "arch": "r18"}}
    )
    assert [(r.name, r.values, r.differs) for r in rows] == [
        ("lr", ["0.1", "0.05"], True),
        ("milestones", ["[10,20]", "-"], True),  # missing in one run: differs
        ("arch", ["r18", "r18"], False),
    ]
    assert not any(r.differs for r in hparam_rows({"a": {"lr": 0.1}}))  # one run: nothing marked


def test_run_hparams_and_search_text(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    info = {"schema": 1, "name": "r", "arch": "resnet18_v2", "epochs": 3,
            "hparams": {"lr": 0.2, "data": "/some/path", "lr_schedule": "cosine"}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(info))
    hp = run_hparams("r", Runs(tmp_path))
    assert hp["lr"] == 0.2 and hp["arch"] == "resnet18_v2" and hp["epochs"] == 3
    text = search_text(hp)
    assert "lr=0.2" in text.split() and "lr_schedule=cosine" in text.split()
    assert "/some/path" not in text  # paths would match nearly every query
    assert run_hparams("missing", Runs(tmp_path)) == {}


def _data(**kw) -> DataInfo:
    return DataInfo.from_dict({"root": "", "layout": "imagenet-folders", **kw})


def test_synthetic_from_run_json_or_marker(tmp_path: Path) -> None:
    assert trained_on_synthetic(_data(synthetic=True))
    assert not trained_on_synthetic(_data(synthetic=False, root=str(tmp_path)))
    assert not trained_on_synthetic(_data(root=str(tmp_path)))  # no marker
    (tmp_path / "demo.json").write_text(json.dumps({"kind": "x", "synthetic": True}))
    assert trained_on_synthetic(_data(root=str(tmp_path)))  # an older run's data
    assert is_synthetic_dataset(tmp_path)
    assert not trained_on_synthetic(_data())
    # the key survives the typed reader's round trip, and is left out when not recorded
    assert DataInfo.from_dict(dataclasses.asdict(_data(synthetic=True))).synthetic is True
    assert _data(synthetic="yes").synthetic is None


@pytest.mark.slow
def test_the_trainer_records_demo_data_as_synthetic(tiny_run: Path) -> None:
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["data"]["synthetic"] is True


def test_long_tables_show_differing_and_well_known_settings_and_fold_the_rest() -> None:
    many = {f"opt_{i:03d}": i for i in range(150)}  # a timm args.yaml has about 150
    rows = hparam_rows({"a": {**many, "lr": 0.1, "model": "r50"}, "b": {**many, "lr": 0.2}})
    shown = [r.name for r in rows if not r.folded]
    assert shown == [
        "model",
        "lr",
    ]  # only the differing ones (model missing in b), in WELL_KNOWN order
    rows = hparam_rows({"a": {**many, "lr": 0.1, "batch_size": 64, "seed": 1}})
    assert [r.name for r in rows if not r.folded] == ["batch_size", "lr", "seed"]
    assert sum(r.folded for r in rows) == 150
    short = hparam_rows({"a": {"lr": 0.1, "zeta": 1}})
    assert not any(r.folded for r in short)  # a short table folds nothing


def test_settings_a_run_did_not_record_are_not_shown_as_zero(tmp_path: Path) -> None:
    import epochscope

    epochscope.init("own", tmp_path, classes=["a", "b"]).finish()  # no epochs, no batch size
    hp = run_hparams("own", Runs(tmp_path))
    assert "batch_size" not in hp and "epochs" not in hp and hp["engine"] == "epochscope-api"
