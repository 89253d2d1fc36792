"""``GET /api/v1/report`` through the app's Flask server (the real route, access checks and
RunCache): the report of the run and epoch asked for, as a download; refusals with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard import api
from tests.support import make_fake_run


@pytest.fixture
def client(tmp_path: Path, monkeypatch):
    runs = tmp_path / "runs"
    make_fake_run(runs, "fake", epochs_done=2)
    other = make_fake_run(runs, "other", epochs_done=1)
    lines = (other / "classes.tsv").read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split("\t")[1], "n99999999")  # another first class
    (other / "classes.tsv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("RUNS_DIR", str(runs))
    from dashboard.app import server

    return server.test_client()


def test_the_report_of_the_epoch_asked_for_is_a_download(client) -> None:
    r = client.get("/api/v1/report?run=fake&epoch=1&lite=1")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert r.headers["Content-Disposition"] == 'attachment; filename="fake-epoch-1.html"'
    assert r.headers["Epochscope-Run"] == "fake" and r.headers["Epochscope-Epoch"] == "1"
    html = r.get_data(as_text=True)
    assert html.startswith("<!DOCTYPE html>") and "epoch 1" in html
    # the newest epoch by default
    assert client.get("/api/v1/report?run=fake&lite=1").headers["Epochscope-Epoch"] == "2"


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("run=nope", 404, "nope"),
        ("run=fake&epoch=7", 404, "no predictions for epoch 7"),
        ("run=fake&epoch=x", 400, "whole number"),
        ("run=../etc", 400, "run name"),
        ("run=fake&compare=nope", 404, "nope"),
        ("run=fake&compare=other", 409, "compare"),
    ],
)
def test_a_report_that_cannot_be_made_says_why(client, query: str, status: int, words) -> None:
    r = client.get(f"/api/v1/report?{query}&lite=1")
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert words in json.loads(r.get_data())["error"]


def test_a_second_report_while_one_is_written_is_told_to_wait(client) -> None:
    assert api.REPORT_SLOT.acquire(blocking=False)  # a report being written by this worker
    try:
        r = client.get("/api/v1/report?run=fake&lite=1")
    finally:
        api.REPORT_SLOT.release()
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert client.get("/api/v1/report?run=fake&lite=1").status_code == 200
