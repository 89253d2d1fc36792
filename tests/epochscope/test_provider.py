"""epochscope.Runs, the one provider of a runs folder: names checked, caches bounded, the
picker's lines and search words, the live poll's events, epochs and models without a Run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import epochscope
from epochscope import Runs


def _run(root: Path, name: str, epochs: int = 2, **hp: object) -> None:
    run = epochscope.init(name, root, classes=["a", "b", "c"], hparams={"lr": 0.1, **hp})
    for e in range(1, epochs + 1):
        run.log_epoch(e, val_top1=0.1 * e, val_top5=0.2 * e)
    run.finish()


def test_the_picker_reads_names_summaries_and_search_words(tmp_path: Path) -> None:
    _run(tmp_path, "first", lr=0.2)
    _run(tmp_path, "second", epochs=1)
    (tmp_path / "not a run").mkdir()
    runs = Runs(tmp_path)
    assert set(runs.names()) == {"first", "second"}
    assert {s.name: s.epochs_done for s in runs.summaries()} == {"first": 2, "second": 1}
    assert "lr=0.2" in runs.search_words("first").split()
    assert runs.search_words("first") is runs.search_words("first")  # made once per run.json
    assert runs.search_words("missing") == "" and runs.info("../etc") is None
    assert runs.info("second").name == "second"


def test_names_are_checked_and_a_run_is_cached_until_its_files_change(tmp_path: Path) -> None:
    _run(tmp_path, "r")
    runs = Runs(tmp_path)
    with pytest.raises(ValueError):
        runs.run("../r")
    with pytest.raises(LookupError):
        runs.run("absent")
    first = runs.run("r")
    assert runs.run("r") is first
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    (tmp_path / "r" / "run.json").write_text(json.dumps({**info, "epochs": 9}))
    assert runs.run("r") is not first and runs.run("r").info.epochs == 9
    assert runs.run("r").names and runs.nbytes > 0  # the classes read: counted
    runs.clear()
    assert runs.nbytes == 0


def test_the_live_poll_reads_only_what_was_appended(tmp_path: Path) -> None:
    _run(tmp_path, "r", epochs=1)
    runs = Runs(tmp_path)
    events, ok, cursor = runs.events_since("r", 0)
    assert ok and any(e["kind"] == "epoch" for e in events)
    assert runs.events_since("r", cursor) == ([], True, cursor)
    resumed = epochscope.init("r", tmp_path, classes=["a", "b", "c"], if_exists="resume")
    resumed.log_epoch(2, val_top1=0.5, val_top5=0.9)
    resumed.finish()
    new, ok, end = runs.events_since("r", cursor)
    assert ok and end > cursor and any(e.get("epoch") == 2 for e in new)
    assert runs.state("r", runs.log("r").events) == "finished"


def test_epochs_and_models_without_opening_a_run(tmp_path: Path) -> None:
    _run(tmp_path, "r")
    runs = Runs(tmp_path)
    assert runs.epochs("r", "models") == [] and runs.epochs("nope", "predictions") == []
    assert runs.names(having="models") == []
    with pytest.raises(OSError):
        runs.model("r", 1)
