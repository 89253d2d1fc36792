"""Gluon ResNet, the learning-rate schedules, devices and the ONNX export (MXNet side)."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon.model_zoo.vision import resnet

from epochscope.records import ONNX_EMBEDDING as EMBEDDING_NAME
from epochscope.records import ONNX_INPUT as INPUT_NAME
from epochscope.records import ONNX_OUTPUT as OUTPUT_NAME
from trainer.mxnet_engine.gpus import DeviceError, check_gpu_support, gpu_compute_capabilities

__all__ = [
    "DeviceError",
    "build_net",
    "contexts",
    "feature_net",
    "logits_and_features",
    "lr_scheduler",
    "onnx_bytes",
]
# the input variable's name in the graph HybridBlock.export writes
_DATA = "data"


def build_net(version: int, depth: int, num_classes: int, width: float = 1.0):
    """Gluon's ResNet (``get_resnet(version, depth)``) with every stage's channels scaled by
    ``width`` the way the PyTorch engine scales them (at least 8)."""
    block_type, layers, channels = resnet.resnet_spec[depth]
    if width != 1.0:
        expansion = 4 if block_type == "bottle_neck" else 1
        planes = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        channels = [planes[0]] + [expansion * p for p in planes]
    net_cls = resnet.resnet_net_versions[version - 1]
    block = resnet.resnet_block_versions[version - 1][block_type]
    return net_cls(block, layers, channels, classes=num_classes)


def lr_scheduler(
    name: str,
    *,
    lr: float,
    steps_per_epoch: int,
    epochs: int,
    factor: float,
    milestones: list[int],
    gamma: float,
    warmup_epochs: float,
    min_factor: float,
) -> mx.lr_scheduler.LRScheduler | None:
    """The seed's two schedules (FactorScheduler every epoch; MultiFactorScheduler at given
    epochs), cosine and constant, each with an optional linear warm-up from lr / 10."""
    warm = {
        "base_lr": lr,
        "warmup_steps": round(warmup_epochs * steps_per_epoch),
        "warmup_begin_lr": lr * 0.1,
    }
    if name == "factor":
        return mx.lr_scheduler.FactorScheduler(step=steps_per_epoch, factor=factor, **warm)
    if name == "step":
        steps = [m * steps_per_epoch for m in sorted(set(milestones)) if m > 0]
        if not steps:
            return mx.lr_scheduler.FactorScheduler(step=steps_per_epoch, factor=1.0, **warm)
        return mx.lr_scheduler.MultiFactorScheduler(step=steps, factor=gamma, **warm)
    if name == "cosine":
        total = max(epochs * steps_per_epoch, warm["warmup_steps"] + 1)
        return mx.lr_scheduler.CosineScheduler(total, final_lr=lr * min_factor, **warm)
    return mx.lr_scheduler.FactorScheduler(step=steps_per_epoch, factor=1.0, **warm)


def contexts(device: str, num_devices: int) -> list[mx.Context]:
    """The seed's list of contexts: every visible GPU (or ``num_devices`` of them), else CPU."""
    built_with_cuda = mx.runtime.Features().is_enabled("CUDA")
    gpus = mx.context.num_gpus() if built_with_cuda else 0
    if device == "cuda" or (device == "auto" and gpus > 0):
        check_gpu_support(gpu_compute_capabilities(), built_with_cuda)
        if gpus == 0:
            raise DeviceError("--device cuda, but MXNet sees no GPU")
        n = min(num_devices or gpus, gpus)
        return [mx.gpu(i) for i in range(n)]
    return [mx.cpu(i) for i in range(max(1, num_devices))]


def logits_and_features(net) -> mx.sym.Symbol | None:
    """``net``'s graph with a second output: the flattened input of its final Dense layer (the
    pooled features; v1 ResNets feed it the [N, C, 1, 1] pool, which Dense flattens itself).
    None when the graph does not end in a Dense layer (then logits only)."""
    logits = net(mx.sym.var(_DATA))  # a Symbol in: the graph, the net's cached op untouched
    if json.loads(logits.tojson())["nodes"][-1]["op"] != "FullyConnected":
        return None
    features = mx.sym.flatten(logits.get_children()[0])  # children: data, weight, bias
    return mx.sym.Group([logits, features])


def feature_net(net) -> gluon.SymbolBlock | None:
    """A hybridized block giving ``(logits, features)``, sharing ``net``'s parameters (so it
    sees every update), or None (see :func:`logits_and_features`). The logits are the same
    graph as ``net``'s, so predictions do not change when embeddings are captured."""
    grouped = logits_and_features(net)
    if grouped is None:
        return None
    with warnings.catch_warnings():
        # "Cannot decide type for ... data": the input's type is known at the first call
        warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
        block = gluon.SymbolBlock(grouped, mx.sym.var(_DATA), params=net.collect_params())
    block.hybridize(static_alloc=True)
    return block


def onnx_bytes(net, image_size: int, num_classes: int) -> bytes:
    """The hybridized net as ONNX (``mx.onnx.export_model``): ``input`` [batch, 3, S, S] float32
    -> ``logits`` [batch, classes] and ``embedding`` [batch, F] (when the graph ends in a Dense
    layer, see :func:`logits_and_features`; as the PyTorch engine, also under
    ``--no-embeddings``); dynamic batch, weights as initializers only."""
    import onnx

    grouped = logits_and_features(net)
    with tempfile.TemporaryDirectory(prefix="mxnet-onnx-") as tmp:
        prefix = str(Path(tmp) / "net")
        net.export(prefix, epoch=0)
        if grouped is not None:  # the same weights, a graph with the second output
            grouped.save(f"{prefix}-symbol.json")
        path = Path(tmp) / "net.onnx"
        mx.onnx.export_model(
            f"{prefix}-symbol.json", f"{prefix}-0000.params",
            in_shapes=[(1, 3, image_size, image_size)], in_types=[np.float32],
            onnx_file_path=str(path), dynamic=True,
            dynamic_input_shapes=[(None, 3, image_size, image_size)],
        )  # fmt: skip
        model = onnx.load(str(path))
    _rename_io(model, num_classes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _rename_io(model, num_classes: int) -> None:
    """The contract's names (``input``, ``logits``, ``embedding``), a named batch axis, and no
    initializers among the graph inputs (the exporter lists every weight as an input too)."""
    g = model.graph
    weights = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in weights]
    del g.input[:]
    g.input.extend(inputs)
    outputs = (OUTPUT_NAME, EMBEDDING_NAME)[: len(g.output)]
    rename = {g.input[0].name: INPUT_NAME}
    rename.update({o.name: new for o, new in zip(g.output, outputs, strict=True)})
    for node in g.node:
        for io in (node.input, node.output):
            for k, name in enumerate(io):
                if name in rename:
                    io[k] = rename[name]
    for value in (*g.input[:1], *g.output):
        value.name = rename[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    out_dims = g.output[0].type.tensor_type.shape.dim
    if len(out_dims) == 2:
        out_dims[1].dim_value = num_classes
