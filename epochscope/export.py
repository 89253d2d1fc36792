"""The one ONNX export of a classifier, for the dashboard's photo classifier, ``trainer predict``
and :meth:`epochscope.Run.log_model`: input ``input`` [batch, 3, S, S] float32 -> output
``logits`` [batch, classes], dynamic batch. torch is imported by the functions, never at import.

Uses the TorchScript-based exporter (``dynamo=False``): it needs nothing beyond torch, takes well
under a second for a ResNet, and its graph runs in onnxruntime as is.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

from epochscope.gather import to_numpy
from epochscope.records import ONNX_INPUT, ONNX_OUTPUT

OPSET = 17


def eval_copy(model: Any) -> Any:
    """A CPU float32 copy in eval mode (the training model may be on a GPU, bf16, channels_last
    or wrapped in DistributedDataParallel): exporting it leaves training state untouched."""
    import torch

    if isinstance(model, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel):
        model = model.module
    cpu = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()
    return cpu.eval()


def example_of(example_input: Any, image_size: int) -> Any:
    """``example_input`` as a float32 CPU tensor, or one zero image of ``image_size``."""
    import torch

    if example_input is None:
        return torch.zeros(1, 3, image_size, image_size)
    return torch.as_tensor(to_numpy(example_input)).float()


def logits_module(cpu: Any, example: Any, num_classes: int | None) -> Any:
    """``cpu`` itself when it returns a logits tensor, else a wrapper taking its output's
    ``logits`` (a dict, as Hugging Face models return) or first item (a tuple); ValueError when
    the result is not ``[batch, num_classes]``."""
    import torch

    with torch.no_grad():
        out = cpu(example)
    if not isinstance(out, torch.Tensor):
        cpu = _LogitsOnly(cpu)
        with torch.no_grad():
            out = cpu(example)
    width = num_classes if num_classes is not None else "classes"
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return logits [batch, {width}] for its input, got {shape}")
    if num_classes is not None and out.shape[1] != num_classes:
        raise ValueError(
            f"model must return logits [batch, {num_classes}] for its input, got {list(out.shape)}"
        )
    return cpu


#: the TorchScript exporter's deprecation notices, silenced by message only: warnings.catch_warnings
#: is process-wide, so a background export inside one would hide the user's own warnings
_NOTICES = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed\. Please remove usage of this function",
)


def export(cpu: Any, example: Any) -> bytes:
    """ONNX bytes of a module already made by :func:`eval_copy` / :func:`logits_module`. Safe on
    a background thread: it changes no warning filter but two message-specific ones."""
    import torch

    for notice in _NOTICES:
        warnings.filterwarnings("ignore", message=notice, category=DeprecationWarning)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            cpu,
            (example,),
            buf,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def onnx_bytes(
    model: Any, image_size: int, example_input: Any = None, num_classes: int | None = None
) -> bytes:
    """The model as ONNX bytes (see the module docstring), from a CPU float32 eval copy."""
    example = example_of(example_input, image_size)
    return export(logits_module(eval_copy(model), example, num_classes), example)


def _LogitsOnly(model: Any) -> Any:  # a class made on first use: torch is imported lazily
    """``model`` whose output dict (``logits``) or tuple (first item) becomes the logits."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            if isinstance(out, dict) or hasattr(out, "keys"):
                return out["logits"]
            return out[0] if isinstance(out, tuple | list) else out

    return LogitsOnly(model).eval()


def check_onnx(data: bytes, num_classes: int) -> None:
    """Refuse ONNX bytes the classifier page could not use (names, output width), when the
    ``onnx`` package is there to read them; without it the bytes are written as given."""
    if not data:
        raise ValueError("model: empty ONNX bytes")
    try:
        import onnx
    except ImportError:
        return
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:
        raise ValueError(f"model: not an ONNX model ({type(e).__name__})") from None
    initialisers = {i.name for i in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in initialisers]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [ONNX_INPUT] or ONNX_OUTPUT not in outputs:
        raise ValueError(
            f"model: the ONNX graph must take one input {ONNX_INPUT!r} and give {ONNX_OUTPUT!r}; "
            f"it takes {inputs} and gives {outputs}"
        )
    out = next(o for o in proto.graph.output if o.name == ONNX_OUTPUT)
    dims = out.type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value != num_classes:
        raise ValueError(
            f"model: {ONNX_OUTPUT!r} has {dims[1].dim_value} columns but classes has {num_classes}"
        )
