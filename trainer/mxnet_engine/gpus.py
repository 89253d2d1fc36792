"""Which GPUs this MXNet build can run on; no MXNet import, so the main environment can test it."""

from __future__ import annotations

import shutil
import subprocess

# mxnet-cu112 ships kernels for compute capability 5.0 .. 8.6 and no PTX to JIT from
MAX_COMPUTE_CAPABILITY = 8.6


class DeviceError(RuntimeError):
    """The requested devices cannot run this MXNet build."""


def gpu_compute_capabilities() -> list[float]:
    """Compute capabilities of the visible GPUs, from nvidia-smi ([] when it is missing)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    caps = []
    for line in out.split():
        try:
            caps.append(float(line))
        except ValueError:
            continue
    return caps


def check_gpu_support(caps: list[float], built_with_cuda: bool) -> None:
    """Refuse, before any kernel launch, GPUs this MXNet build has no kernels for."""
    if not built_with_cuda:
        raise DeviceError(
            "this .venv-mxnet has the CPU build of MXNet; for CUDA 11.2 GPUs (compute capability "
            "up to 8.6) run `make install-mxnet MXNET_PACKAGE=mxnet-cu112`, or pass --device cpu"
        )
    too_new = [c for c in caps if c > MAX_COMPUTE_CAPABILITY]
    if too_new:
        raise DeviceError(
            f"GPU compute capability {max(too_new):g} is newer than mxnet-cu112 supports "
            f"(kernels for 5.0-{MAX_COMPUTE_CAPABILITY:g}, no PTX: Hopper and newer cannot run "
            "it); "
            "MXNet is retired and has no newer build: use the PyTorch engine, or --device cpu"
        )
