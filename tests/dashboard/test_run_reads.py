"""One matrix frame of a run not seen before stats and opens each of the run's files at most
once: every read goes through one epochscope.Run (issue 20; it was about nine metadata
look-ups of four stats each)."""

from __future__ import annotations

import builtins
import io
import os
from collections import Counter
from pathlib import Path

import pytest

from dashboard.confusion import data, service
from tests.support import make_fake_run


class FileCalls:
    """Counts stat and open calls per path under one folder (the run directory)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root.resolve())
        self.stats: Counter[str] = Counter()
        self.opens: Counter[str] = Counter()
        for module, name, counter in (
            (os, "stat", self.stats), (os, "lstat", self.stats), (os, "open", self.opens),
            (builtins, "open", self.opens), (io, "open", self.opens),
        ):  # fmt: skip
            monkeypatch.setattr(module, name, self._counting(getattr(module, name), counter))

    def _counting(self, real, counter: Counter[str]):
        def counted(path, *args, **kwargs):
            if isinstance(path, str | os.PathLike) and not isinstance(path, int):
                full = os.path.abspath(os.fspath(path))
                if full.startswith(self.root + os.sep):
                    counter[os.path.relpath(full, self.root)] += 1
            return real(path, *args, **kwargs)

        return counted


def _frame(run_dir: Path, epoch: int, kind: str) -> service.MatrixView:
    """What the matrix callback does for one frame (dashboard/confusion/page.py)."""
    opened = data.run(run_dir)
    assert epoch in opened.epochs
    c = opened.num_classes
    return service.matrix_view(opened, epoch, "top5", kind, "eq_hist", (0, c), (0, c))


@pytest.mark.parametrize("kind", ["wordnet", "cluster"])
def test_one_frame_of_a_new_run_reads_each_file_at_most_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    run_dir = make_fake_run(tmp_path, "fresh", epochs_done=3)
    data.clear()
    calls = FileCalls(run_dir, monkeypatch)
    view = _frame(run_dir, 2, kind)
    assert view.figure["layout"]["images"]  # a frame was drawn
    assert calls.stats and calls.opens  # the counter sees the reads
    # files: one stat each (the snapshot); a sub-folder also gets the bounded reader's link
    # check (one lstat per folder level) when a file under it is opened
    stats = dict(calls.stats)  # (the checks below stat files too)
    files = {k: n for k, n in stats.items() if (run_dir / k).is_file()}
    assert files and max(files.values()) == 1, stats
    opened_npz = sum(1 for k in calls.opens if k.startswith("predictions/"))
    assert stats["predictions"] <= 1 + opened_npz, stats
    assert max(calls.opens.values()) == 1, calls.opens
    read = set(calls.opens)
    assert {"classes.tsv", "val_index.tsv", "predictions/epoch-0002.npz"} <= read
    if kind == "cluster":  # the clustered order comes from the latest epoch
        assert "predictions/epoch-0003.npz" in read


def test_the_next_frame_of_a_seen_run_only_checks_for_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = make_fake_run(tmp_path, "seen", epochs_done=3)
    data.clear()
    _frame(run_dir, 2, "wordnet")
    calls = FileCalls(run_dir, monkeypatch)
    _frame(run_dir, 2, "wordnet")
    assert not calls.opens, calls.opens  # nothing read again
    assert max(calls.stats.values()) == 1  # the snapshot's signature: one stat a file
    _frame(run_dir, 3, "wordnet")  # another epoch: only its file is read
    assert set(calls.opens) == {"predictions/epoch-0003.npz"}
