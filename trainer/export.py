"""ONNX export of a classifier for the dashboard's upload classifier and ``trainer predict``."""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

from epochscope.records import ONNX_INPUT as INPUT_NAME
from epochscope.records import ONNX_OUTPUT as OUTPUT_NAME

OPSET = 17


def onnx_bytes(model: nn.Module, image_size: int) -> bytes:
    """The model in evaluation mode as ONNX bytes: ``input`` [batch, 3, S, S] float32 ->
    ``logits`` [batch, classes], dynamic batch.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs nothing beyond torch, takes
    well under a second for a ResNet, and its graph runs in onnxruntime as is.
    """
    # a CPU float32 copy: the training model may be bf16-autocast, channels_last or on a GPU
    cpu_model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()
    cpu_model.eval()
    dummy = torch.zeros(1, 3, image_size, image_size)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            cpu_model,
            (dummy,),
            buf,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()
