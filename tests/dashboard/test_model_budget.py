"""Hostile models: graphs an image classifier does not need are refused when loaded
(dashboard/model_limits.py), and a classification that overruns its time budget is stopped, its
slot freed, and its model refused until the file changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from dashboard import inference, model_limits
from epochscope.reader import model_path, read_run_info
from tests.support import loop_onnx_model, make_fake_run, slow_onnx_model, tiny_onnx_model


def test_a_plain_classifier_passes_the_graph_check(tmp_path: Path) -> None:
    tiny_onnx_model(tmp_path / "m.onnx", 10, seed=0)
    assert model_limits.check_model_file(tmp_path / "m.onnx") == (tmp_path / "m.onnx").read_bytes()


def test_a_loop_model_is_refused_when_loaded(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, "loop", epochs_done=1)
    loop_onnx_model(model_path(run, 1), 10)
    cache = inference.SessionCache()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="control-flow operator Loop"):
        inference.Classifier.for_run(run, 1, cache)
    assert time.perf_counter() - start < 2 and len(cache) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "no operators|0 graphs"), (b"\xff" * 64, "damaged|truncated|wire type"),
     (b"\x3a\x05ab", "truncated")],
)  # fmt: skip
def test_damaged_model_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(model_limits.ModelRefused, match=message):
        model_limits.check_model_bytes(data)


def test_a_custom_domain_and_the_size_limit_are_refused(tmp_path: Path, monkeypatch) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Evil", ["input"], ["logits"], domain="com.example")], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(model_limits.ModelRefused, match=r"domain 'com\.example'"):
        model_limits.check_model_bytes(model.SerializeToString())
    tiny_onnx_model(tmp_path / "m.onnx", 10, seed=0)
    monkeypatch.setenv("EPOCHSCOPE_MAX_MODEL_MB", "0.00001")
    with pytest.raises(model_limits.ModelRefused, match="EPOCHSCOPE_MAX_MODEL_MB"):
        model_limits.check_model_file(tmp_path / "m.onnx")


def _slow_run(tmp_path: Path) -> Path:
    run = make_fake_run(tmp_path, "slow", epochs_done=1)
    slow_onnx_model(model_path(run, 1), 10)
    return run


def test_a_classification_over_its_budget_is_stopped_and_the_model_refused(
    tmp_path: Path,
) -> None:
    run = _slow_run(tmp_path)
    cache = inference.SessionCache()
    classifier = inference.Classifier.for_run(run, 1, cache)
    classifier.seconds = 1.0
    pre = read_run_info(run).preprocess
    batch = np.zeros((1, 3, pre.image_size, pre.image_size), np.float32)
    start = time.perf_counter()
    with pytest.raises(inference.ModelTimeout, match="stopped after its 1 s limit"):
        classifier.predict(batch)
    assert time.perf_counter() - start < 3
    with pytest.raises(ValueError, match="refused until its file changes"):
        inference.Classifier.for_run(run, 1, cache)
    # a new file (another mtime) is loaded again
    path = model_path(run, 1)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert inference.Classifier.for_run(run, 1, cache).key != classifier.key


def test_the_budget_also_stops_a_loop_that_got_past_the_check(tmp_path: Path) -> None:
    loop_onnx_model(tmp_path / "loop.onnx", 10)
    session = ort.InferenceSession(str(tmp_path / "loop.onnx"), providers=["CPUExecutionProvider"])
    run = make_fake_run(tmp_path, "fake", epochs_done=1)
    pre = read_run_info(run).preprocess
    classifier = inference.Classifier(session, pre, [(i, f"n{i}", f"c{i}") for i in range(10)])
    classifier.seconds = 0.5
    start = time.perf_counter()
    with pytest.raises(inference.ModelTimeout):
        classifier.predict(np.zeros((1, 3, 8, 8), np.float32))
    assert time.perf_counter() - start < 2.5
