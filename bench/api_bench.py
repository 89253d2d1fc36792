"""What ``epochscope.init`` logging costs a plain PyTorch loop: the same loop with and without it.

One epoch of the demo's shape (the demo model, 36,000 training and 12,000 validation images of
32 px, batch 144, data already in memory): train, then validation logits. The logged side adds
what examples/plain_pytorch.py does: ``log_step`` every step, then ``log_predictions`` (top-5 of
12,000 x 1000 logits to an npz), ``log_model`` (ONNX export) and ``log_epoch`` every epoch,
into a real run directory. Both sides run interleaved in the same process; the ratio is plain
time / logged time per epoch (1.0: free); ``logged_vs_plain_by_parts`` divides the plain
epoch by itself plus the time spent inside the logging calls, the same cost read off their own
clocks (steadier when the machine is shared).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import epochscope
from bench.harness import interleaved, rate, ratio, stat
from trainer.data import cpu_threads
from trainer.models import create_model
from trainer.presets import DEMO_PRESET

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def measure(
    train_images: int = 36_000,
    val_images: int = 12_000,
    classes: int = 1000,
    batch_size: int = 144,
    distinct_batches: int = 25,
    repeats: int = 5,
) -> dict:
    size = DEMO_PRESET["image_size"]
    torch.manual_seed(0)
    model = create_model(DEMO_PRESET["arch"], num_classes=classes, width=DEMO_PRESET["width"])
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    # a few distinct batches, cycled: the loop's cost, not 100 MB of copies
    xs = [
        torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
        for _ in range(distinct_batches)
    ]
    ys = torch.randint(0, classes, (distinct_batches, batch_size))
    steps = train_images // batch_size
    val_x = torch.randn(val_images, 3, size, size).contiguous(memory_format=torch.channels_last)
    val_labels = torch.randint(0, classes, (val_images,))
    names = [f"class{i}" for i in range(classes)]

    step_seconds: list[float] = []  # time inside log_step, per logged epoch

    def train_epoch(run: epochscope.Run | None, epoch: int) -> float:
        model.train()
        total = 0.0
        inside = 0.0
        for i in range(steps):
            loss = F.cross_entropy(model(xs[i % distinct_batches]), ys[i % distinct_batches])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()  # a plain loop reads its loss too
            total += value
            if run is not None:
                t0 = time.perf_counter()
                run.log_step((epoch - 1) * steps + i + 1, loss=value, lr=0.01)
                inside += time.perf_counter() - t0
        if run is not None:
            step_seconds.append(inside)
        return total / steps

    @torch.no_grad()
    def val_logits() -> torch.Tensor:
        model.eval()
        return torch.cat([model(xb) for xb in val_x.split(256)])

    with tempfile.TemporaryDirectory() as tmp:
        run = epochscope.init(
            "bench", tmp, classes=names, val_labels=val_labels, image_size=size,
            resize_size=size, mean=MEAN, std=STD, steps_per_epoch=steps,
        )  # fmt: skip
        epoch = 0
        log_seconds: list[float] = []

        def plain() -> None:
            train_epoch(None, 0)
            logits = val_logits()
            # what a plain loop computes for itself: top-1 and top-5 accuracy
            top5 = logits.topk(5, dim=1).indices
            hit = top5 == val_labels[:, None]
            (hit[:, 0].float().mean().item(), hit.any(dim=1).float().mean().item())

        def logged() -> None:
            nonlocal epoch
            epoch += 1
            loss = train_epoch(run, epoch)
            logits = val_logits()
            t0 = time.perf_counter()
            run.log_predictions(epoch, logits)
            run.log_model(epoch, model)
            run.log_epoch(epoch, train_loss=loss, lr=0.01)
            log_seconds.append(time.perf_counter() - t0)

        t_logged, t_plain = interleaved(logged, plain, repeats)
        run.finish()
        onnx_bytes = (Path(tmp) / "bench" / "models" / "epoch-0001.onnx").stat().st_size
    n = steps * batch_size + len(val_labels)
    # the same cost from the logging calls' own clocks: less exposed to a noisy neighbour than
    # the difference of two whole epochs
    logging = [a + b for a, b in zip(step_seconds[1:], log_seconds[1:], strict=True)]
    plain_median = stat(t_plain, "s").median
    by_parts = [plain_median / (plain_median + x) for x in logging]
    return {
        "config": dict(
            arch=DEMO_PRESET["arch"],
            width=DEMO_PRESET["width"],
            image_size=size,
            classes=classes,
            batch_size=batch_size,
            train_images=steps * batch_size,
            val_images=len(val_labels),
            threads=torch.get_num_threads(),
        ),
        "plain_epoch_s": stat(t_plain, "s").as_dict(),
        "logged_epoch_s": stat(t_logged, "s").as_dict(),
        "epoch_end_logging_s": stat(log_seconds[1:], "s").as_dict(),
        "step_logging_s": stat(step_seconds[1:], "s").as_dict(),
        "logged_vs_plain_by_parts": stat(by_parts, "ratio").as_dict(),
        "plain_img_per_s": rate(n, t_plain).as_dict(),
        "logged_vs_plain": ratio(t_logged, t_plain).as_dict(),
        "onnx_bytes": onnx_bytes,
    }


def run(quick: bool = False) -> dict:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    torch.set_num_threads(cpu_threads(DEMO_PRESET["workers"]))
    if quick:
        r = measure(train_images=64, val_images=64, classes=20, batch_size=16,
                    distinct_batches=2, repeats=2)  # fmt: skip
    else:
        r = measure()
    return {"demo_model": r, "started": started}
