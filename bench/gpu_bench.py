"""GPU section: the trainer's loops on CUDA (bf16, channels_last, with and without
torch.compile) for ResNet-18 and ResNet-50 at 224 px on synthetic tensors, in img/s and as a
share of the GPU's bf16 matrix peak measured in the same run. "skipped: no GPU" without CUDA.
"""

from __future__ import annotations

import time

import torch

from bench.trainer_bench import measure
from trainer.models import create_model

ARCHS = ("resnet18_v2", "resnet50_v2")


def matmul_peak_tflops(n: int = 8192, repeats: int = 10) -> float:
    """bf16 dense matrix-product rate: the practical peak the model's FLOPs are compared to."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def train_flops_per_image(arch: str, image_size: int = 224) -> float:
    """Forward FLOPs counted by torch's FlopCounterMode, times 3 for forward + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(arch, num_classes=1000)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(1, 3, image_size, image_size))
    return 3.0 * counter.get_total_flops()


def run(quick: bool = False) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no GPU"}
    out: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    peak = matmul_peak_tflops()
    out["bf16_matmul_tflops"] = peak
    for arch in ARCHS[:1] if quick else ARCHS:
        flops = train_flops_per_image(arch)
        for compiled in (False,) if quick else (False, True):
            r = measure(arch=arch, width=1.0, image_size=224, batch_size=256, classes=1000,
                        batches=4 if quick else 20, repeats=2 if quick else 3, device="cuda",
                        amp=True, channels_last=True, compile_model=compiled)  # fmt: skip
            r["train_gflop_per_image"] = flops / 1e9
            r["share_of_bf16_peak"] = r["train_img_per_s"]["median"] * flops / (peak * 1e12)
            out[f"{arch}{'_compiled' if compiled else ''}"] = r
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
