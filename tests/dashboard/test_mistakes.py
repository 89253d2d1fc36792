"""The training page's mistake charts, as the callback gets them: one graph per chart a run
has data for, and none (not an error) for a run that cannot be read now."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.synthetic_embeddings import write_embeddings
from bench.synthetic_runs import write_run
from dashboard.training import mistakes
from epochscope import maps
from epochscope.run import open_run


def test_a_run_gets_its_charts_and_an_unreadable_one_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    run_dir = write_run(tmp_path / "runs" / "r", num_classes=20, per_class=5, epochs=2)
    write_embeddings(run_dir)
    graphs = mistakes.run_graphs("r", lambda name: open_run(tmp_path / "runs" / name))
    kinds = [g.id["type"] for g in graphs]
    assert "training-mistakes-graph" in kinds and "training-silhouette-graph" in kinds
    assert "training-bands-graph" in kinds
    assert kinds[-1] in ("training-ece-graph", "training-ece-missing")  # calibration last
    assert all(g.id["run"] == "r" for g in graphs)

    def broken(name: str):
        raise ValueError("mid-replacement")

    assert mistakes.run_graphs("r", broken) == []
