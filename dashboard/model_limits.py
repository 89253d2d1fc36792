"""What an image classifier's ONNX graph may hold, checked before onnxruntime loads it.

A model file is read by the dashboard because a run directory holds it, and run directories
come from anywhere (copied, synced, downloaded). A classifier needs a fixed pipeline of tensor
operators; anything beyond that is refused when the model is loaded (docs/reliability.md):

- at most ``EPOCHSCOPE_MAX_MODEL_MB`` (default 512) of file;
- operators of the standard ONNX domain only (no custom or contrib domains, no model-local
  functions), and no control flow: ``Loop``, ``Scan``, ``If`` and ``SequenceMap`` (a Loop of
  10^15 steps runs for days);
- at most ``MAX_NODES`` operators.

The check reads the protobuf wire format itself (ModelProto -> graph -> node), so the
dashboard needs no ``onnx`` package; initializers are skipped by their length, not decoded.
"""

from __future__ import annotations

import os

from dashboard import config
from epochscope import ModelFile

#: operators that repeat or branch at run time: a classifier has no use for them
CONTROL_FLOW = frozenset({"Loop", "Scan", "If", "SequenceMap"})
#: the standard operator set's names for its domain
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
MAX_NODES = 20_000

# field numbers of onnx.proto (ModelProto, GraphProto, NodeProto)
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE = 1
_NODE_OP_TYPE, _NODE_DOMAIN = 4, 7


class ModelRefused(ValueError):
    """The model file holds something an image classifier does not need."""


def max_model_bytes() -> int:
    """Largest model file loaded ($EPOCHSCOPE_MAX_MODEL_MB, default 512)."""
    return int(config.number("EPOCHSCOPE_MAX_MODEL_MB", 512, 1e-6) * 2**20)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ModelRefused("not an ONNX model: its protobuf is damaged")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value) of one protobuf message; a length-delimited value is
    its (start, end) span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value
            continue
        if wire == 2:
            size, pos = _varint(buf, pos, end)
            span = (pos, pos + size)
            pos += size
        elif wire in (1, 5):
            span = None
            pos += 8 if wire == 1 else 4
        else:
            raise ModelRefused(f"not an ONNX model: protobuf wire type {wire}")
        if pos > end:
            raise ModelRefused("not an ONNX model: it is truncated")
        yield field, wire, span


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", "replace")


def check_model_bytes(data: bytes, name: str = "the model") -> None:
    """Raise ModelRefused, naming the limit, when ``data`` is not a plain classifier graph."""
    buf = memoryview(data)
    graphs = []
    for field, wire, value in _fields(buf, 0, len(buf)):
        if field == _MODEL_GRAPH and wire == 2:
            graphs.append(value)
        elif field == _MODEL_FUNCTIONS and wire == 2:
            raise ModelRefused(f"{name} defines its own functions; a classifier needs none")
    if len(graphs) != 1:
        raise ModelRefused(f"{name} is not an ONNX model (it has {len(graphs)} graphs)")
    nodes = 0
    for field, wire, span in _fields(buf, *graphs[0]):
        if field != _GRAPH_NODE or wire != 2:
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise ModelRefused(f"{name} has over {MAX_NODES} operators")
        op_type = domain = ""
        for f, w, v in _fields(buf, *span):
            if f == _NODE_OP_TYPE and w == 2:
                op_type = _text(buf, v)
            elif f == _NODE_DOMAIN and w == 2:
                domain = _text(buf, v)
        if domain not in STANDARD_DOMAINS:
            raise ModelRefused(
                f"{name} uses the operator {op_type!r} of the domain {domain!r}; only the "
                "standard ONNX operators are loaded"
            )
        if op_type in CONTROL_FLOW:
            raise ModelRefused(
                f"{name} uses the control-flow operator {op_type}, which an image classifier "
                f"does not need (refused: {', '.join(sorted(CONTROL_FLOW))})"
            )
    if nodes == 0:
        raise ModelRefused(f"{name} has no operators")


def check_model(model: ModelFile) -> bytes:
    """The model's bytes, once they pass ``check_model_bytes`` and the size limit; read by
    the provider's bounded reader (a regular file inside its run)."""
    limit = max_model_bytes()
    if model.size > limit:
        raise ModelRefused(
            f"{model.name} is {model.size / 2**20:.0f} MB, over the {limit / 2**20:.0f} MB model "
            "limit (EPOCHSCOPE_MAX_MODEL_MB)"
        )
    data = model.read(limit)
    check_model_bytes(data, model.name)
    return data


def check_model_file(path: str | os.PathLike[str]) -> bytes:
    """:func:`check_model` of a model file outside any run (a notebook's, a test's)."""
    return check_model(ModelFile.at(path))
