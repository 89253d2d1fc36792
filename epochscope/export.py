"""The one ONNX export of a classifier, for the dashboard's photo classifier, ``trainer predict``
and :meth:`epochscope.Run.log_model`: input ``input`` [batch, 3, S, S] float32 -> output
``logits`` [batch, classes], dynamic batch, and when the model exposes them a second output
``embedding`` [batch, F]: the features feeding its final linear layer, which the epoch's stored
embedding projection takes (similar images for an uploaded photo). torch is imported by the
functions, never at import.

Where the embedding comes from (:func:`with_embedding`): a model with ``forward_features``,
``pool`` and an ``nn.Linear`` ``fc`` (the trainer's ResNets) gives
``flatten(pool(forward_features(x)))``; any other model the input of the ``nn.Linear`` whose
output is the logits (found by running the example once with hooks; a Hugging Face
``classifier``, torchvision's ``fc`` or ``heads.head``). When no such layer is found, or its input
is not [batch, F], the model is exported with logits only and still classifies.

Uses the TorchScript-based exporter (``dynamo=False``): it needs nothing beyond torch, takes well
under a second for a ResNet, and its graph runs in onnxruntime as is.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

from epochscope.gather import to_numpy
from epochscope.records import ONNX_EMBEDDING, ONNX_INPUT, ONNX_OUTPUT

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


def with_embedding(cpu: Any, example: Any) -> Any:
    """``cpu`` (a :func:`logits_module`) wrapped to return ``(logits, embedding)`` when the
    features feeding its final linear layer are found (see the module docstring), else
    ``cpu`` itself. The wrapper's logits are checked equal to the model's own."""
    import torch

    fc = getattr(cpu, "fc", None)
    if (
        hasattr(cpu, "forward_features")
        and hasattr(cpu, "pool")
        and isinstance(fc, torch.nn.Linear)
    ):
        wrapped = _PooledFeatures(cpu)
    else:
        head = head_linear(cpu, example)
        if head is None:
            return cpu
        wrapped = _HookedFeatures(cpu, head)
    try:
        with torch.no_grad():
            logits, features = wrapped(example)
            plain = cpu(example)
    except Exception:  # a model the wrapper cannot run: logits only
        return cpu
    same = isinstance(plain, torch.Tensor) and plain.shape == logits.shape
    if not same or features.ndim != 2 or len(features) != len(logits):
        return cpu
    if not torch.allclose(logits, plain, rtol=1e-4, atol=1e-5):
        return cpu
    return wrapped


def head_linear(cpu: Any, example: Any) -> Any:
    """The last-run ``nn.Linear`` of ``cpu`` whose output is its logits and whose input is
    [batch, F]; None when there is none."""
    import torch

    seen: list[tuple[Any, Any, Any]] = []
    handles = [
        m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0], out)))
        for m in cpu.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    try:
        with torch.no_grad():
            logits = cpu(example)
    except Exception:
        return None
    finally:
        for h in handles:
            h.remove()
    for module, inp, out in reversed(seen):
        if (
            isinstance(out, torch.Tensor)
            and out.shape == logits.shape
            and inp.ndim == 2
            and torch.equal(out, logits)
        ):
            return module
    return None


def export(cpu: Any, example: Any) -> bytes:
    """ONNX bytes of a module already made by :func:`eval_copy` / :func:`logits_module` (and
    :func:`with_embedding`: then a second output ``embedding``). Safe on a background thread:
    it changes no warning filter but two message-specific ones."""
    import torch

    for notice in _NOTICES:
        warnings.filterwarnings("ignore", message=notice, category=DeprecationWarning)
    outputs = (
        [ONNX_OUTPUT, ONNX_EMBEDDING] if getattr(cpu, "gives_embedding", False) else [ONNX_OUTPUT]
    )
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            cpu,
            (example,),
            buf,
            input_names=[ONNX_INPUT],
            output_names=outputs,
            dynamic_axes={ONNX_INPUT: {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def onnx_bytes(
    model: Any,
    image_size: int,
    example_input: Any = None,
    num_classes: int | None = None,
    embedding: bool = True,
) -> bytes:
    """The model as ONNX bytes (see the module docstring), from a CPU float32 eval copy;
    ``embedding=False``: logits only."""
    example = example_of(example_input, image_size)
    cpu = logits_module(eval_copy(model), example, num_classes)
    return export(with_embedding(cpu, example) if embedding else cpu, example)


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


def _PooledFeatures(model: Any) -> Any:
    """The trainer's ResNet giving ``(fc(f), f)``, ``f = flatten(pool(forward_features(x)))``."""
    import torch

    class PooledFeatures(torch.nn.Module):
        gives_embedding = True

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            m = self.inner
            features = torch.flatten(m.pool(m.forward_features(x)), 1)
            return m.fc(features), features

    return PooledFeatures(model).eval()


def _HookedFeatures(model: Any, head: Any) -> Any:
    """``model`` giving ``(logits, the input of its head layer)``, taken by a pre-hook."""
    import torch

    class HookedFeatures(torch.nn.Module):
        gives_embedding = True

        def __init__(self, inner: torch.nn.Module, head: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.head = [head]  # a list: not registered twice as a submodule

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            box: list[torch.Tensor] = []
            handle = self.head[0].register_forward_pre_hook(lambda m, args: box.append(args[0]))
            try:
                logits = self.inner(x)
            finally:
                handle.remove()
            return logits, box[-1]

    return HookedFeatures(model, head).eval()


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
