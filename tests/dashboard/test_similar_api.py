"""POST /api/v1/similar through a real gunicorn on the session's tiny training run: a
validation photo finds itself first, the answer is Run.similar's, and runs without embeddings
(or whose model lacks the ``embedding`` output) get a 409 naming what is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import epochscope
from epochscope import reader
from epochscope.embeddings import EMBEDDINGS_MISSING
from tests.support import http, multipart, tiny_onnx_model

pytestmark = pytest.mark.slow


def similar(base: str, payload: bytes, query: str = "", **fields) -> object:
    body, ctype = multipart({k: str(v) for k, v in fields.items()}, "photo.jpg", payload)
    return http(f"{base}/api/v1/similar{query}", body, {"Content-Type": ctype})


def test_similar_api_on_a_trained_run(tiny_run: Path, tmp_path: Path, dashboard_server) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    # a run from before embeddings, and one whose model has no embedding output
    shutil.copytree(tiny_run, runs / "old", ignore=shutil.ignore_patterns("embeddings"))
    shutil.copytree(tiny_run, runs / "old-model")
    last = reader.model_epochs(tiny_run)[-1]
    classes = len(reader.read_classes(tiny_run))
    tiny_onnx_model(reader.model_path(runs / "old-model", last), classes, seed=0)
    info = reader.read_run_info(tiny_run)
    labels, paths = reader.read_val_index(tiny_run)
    row = 17
    photo = (Path(info.data.root) / paths[row]).read_bytes()
    base = dashboard_server(runs)

    reply = similar(base, photo, "?run=tiny&k=5")
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert isinstance(answer, list) and len(answer) == 5
    assert set(answer[0]) == {"index", "path", "label", "label_name", "distance"}
    # the photo is that validation image: it finds itself first
    assert answer[0]["index"] == row and answer[0]["distance"] < 0.01
    assert answer[0]["path"] == paths[row] and answer[0]["label"] == int(labels[row])
    assert [a["distance"] for a in answer] == sorted(a["distance"] for a in answer)
    # the same as the notebook's Run.similar (one implementation)
    frame = epochscope.open_run(runs / "tiny").similar(photo, k=5, epoch=last)
    assert frame["index"].tolist() == [a["index"] for a in answer]
    # fields may come in the form too; k defaults to 10
    reply = similar(base, photo, run="tiny", epoch=str(last))
    assert reply.status == 200 and len(reply.json()) == 10

    for query, status, words in [
        ("?run=tiny&k=0", 400, "k must be a whole number from 1 to 100"),
        ("?run=tiny&k=101", 400, "k must be a whole number from 1 to 100"),
        ("?run=tiny&epoch=x", 400, "epoch must be a whole number"),
        ("?run=tiny&epoch=99", 404, "no model for epoch 99"),
        ("?run=nope", 404, ""),
        ("?run=old", 409, EMBEDDINGS_MISSING),
        ("?run=old-model", 409, "no 'embedding' output"),
    ]:
        reply = similar(base, photo, query)
        assert reply.status == status, (query, reply.body)
        assert words in reply.json()["error"], (query, reply.body)
    reply = similar(base, b"not an image at all", "?run=tiny")
    assert reply.status == 415 and "not an image" in reply.json()["error"]
