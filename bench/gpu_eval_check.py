"""On a CUDA machine: ``evaluate()`` as it was (a ``.cpu()`` per batch per output) against
the current one (results stay on the device, one copy at the end), each as
``eval_capture_vs_reference`` in the same process. Prints JSON; ``python -m bench.gpu_eval_check``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

import bench.trainer_bench as tb
from epochscope.predictions import pad5
from trainer import train


@torch.no_grad()
def evaluate_per_batch_copy(model, loader, normalize, *, amp: bool, progress: bool):
    """The previous evaluate(): three device-to-host copies per batch."""
    model.eval()
    device = normalize.device
    out: dict[str, list] = {k: [] for k in ("index", "top5", "prob", "loss", "ok")}
    for images, labels, indices, ok in loader:
        x = normalize(images)
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        logits = logits.float()
        prob, top = logits.softmax(dim=1).topk(min(5, logits.shape[1]), dim=1)
        out["index"].append(indices.numpy())
        out["top5"].append(pad5(top.cpu().numpy(), -1))
        out["prob"].append(pad5(prob.cpu().numpy(), 0.0))
        out["loss"].append(F.cross_entropy(logits, y, reduction="none").cpu().numpy())
        out["ok"].append(ok.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    results = {"gpu": torch.cuda.get_device_name(0)}
    for arch in ("resnet18_v2", "resnet50_v2"):
        for name, fn in (("before", evaluate_per_batch_copy), ("after", train.evaluate)):
            tb.evaluate = fn  # the bench's "ours" eval side
            r = tb.measure(arch=arch, width=1.0, image_size=224, batch_size=256, classes=1000,
                           batches=12, repeats=5, device="cuda", amp=True)  # fmt: skip
            results[f"{arch}_{name}"] = {
                k: r[k]["median"]
                for k in ("eval_img_per_s", "reference_eval_img_per_s", "eval_capture_vs_reference")
            }
            print(arch, name, results[f"{arch}_{name}"], file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
