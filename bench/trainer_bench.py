"""Training and evaluation throughput: Epochscope's loops against bare PyTorch loops.

``trainer_vs_reference``: ``trainer.train.train_one_epoch`` (metrics to a real run directory,
the device sampler thread running) over a bare loop (forward, loss, backward, step) with the
same model, batch, image size and data already in memory. ``eval_capture_vs_reference``:
``trainer.train.evaluate`` (top-5 capture for the prediction files) over a bare forward loop.
``train_stats_overhead``: ``train_one_epoch`` recording each image's training statistics (and
the epoch's copy of them to the host) over the same loop without, interleaved.
Both sides take the same uint8 batches and normalise them on the device the same way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.harness import interleaved, rate, ratio
from epochscope.training_stats import TrainStatsCollector
from epochscope.writer import RunWriter
from trainer.data import Normalize, cpu_threads
from trainer.devices import DeviceMonitor
from trainer.models import create_model
from trainer.presets import DEMO_PRESET
from trainer.train import evaluate, train_one_epoch


class InMemoryLoader:
    """Yields the trainer's batch format (uint8 images, labels, indices, ok) from memory."""

    def __init__(self, batches: int, batch_size: int, image_size: int, classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.batch_size = batch_size
        self.images = torch.randint(0, 256, (batches, batch_size, 3, image_size, image_size),
                                    dtype=torch.uint8, generator=g)  # fmt: skip
        self.labels = torch.randint(0, classes, (batches, batch_size), generator=g)
        self.ok = torch.ones(batch_size, dtype=torch.bool)
        if torch.cuda.is_available():  # as the trainer's DataLoader does on CUDA
            self.images = self.images.pin_memory()

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(len(self.images)):
            idx = torch.arange(i * self.batch_size, (i + 1) * self.batch_size)
            yield self.images[i], self.labels[i], idx, self.ok


def _setup(arch: str, width: float, classes: int, device: torch.device, channels_last: bool):
    model = create_model(arch, num_classes=classes, width=width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return model, opt, sched


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    arch: str = "resnet18_v2",
    width: float = 0.5,
    image_size: int = 32,
    batch_size: int = 144,
    classes: int = 1000,
    batches: int = 20,
    repeats: int = 5,
    device: str = "cpu",
    amp: bool = False,
    channels_last: bool = True,
    compile_model: bool = False,
) -> dict:
    dev = torch.device(device)
    loader = InMemoryLoader(batches, batch_size, image_size, classes)
    model, opt, sched = _setup(arch, width, classes, dev, channels_last)
    run_model = torch.compile(model) if compile_model else model
    normalize = Normalize(dev, channels_last)
    images = batches * batch_size

    def bare_train() -> None:
        model.train()
        for x, y, _, _ in loader:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = run_model(normalize(x))
            loss = F.cross_entropy(logits.float(), y.to(dev, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)

    @torch.no_grad()
    def bare_eval() -> None:
        model.eval()
        for x, _, _, _ in loader:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                run_model(normalize(x))
        _sync(dev)

    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter(Path(tmp) / "bench")
        writer.acquire()
        monitor = DeviceMonitor(writer.event, dev.type, interval=1.0)
        monitor.start()

        def ours_train() -> None:
            train_one_epoch(
                run_model, loader, normalize, opt, sched, epoch=1, label_smoothing=0.0,
                amp=amp, world_size=1, log_interval=10,
                on_step=lambda f: writer.event("step", 1, **f), progress=False,
            )  # fmt: skip
            _sync(dev)

        def ours_eval() -> None:
            evaluate(run_model, loader, normalize, amp=amp, progress=False)
            _sync(dev)

        collector = TrainStatsCollector(images, classes)

        def ours_train_with_stats() -> None:  # and the epoch's one copy to the host
            train_one_epoch(
                run_model, loader, normalize, opt, sched, epoch=1, label_smoothing=0.0,
                amp=amp, world_size=1, log_interval=10,
                on_step=lambda f: writer.event("step", 1, **f), progress=False,
                stats=collector,
            )  # fmt: skip
            collector.rows()
            _sync(dev)

        t_ours, t_bare = interleaved(ours_train, bare_train, repeats)
        t_stats, t_plain = interleaved(ours_train_with_stats, ours_train, repeats)
        e_ours, e_bare = interleaved(ours_eval, bare_eval, repeats)
        monitor.stop()
        writer.close()
    return {
        "config": dict(
            arch=arch,
            width=width,
            image_size=image_size,
            batch_size=batch_size,
            classes=classes,
            device=device,
            amp=amp,
            channels_last=channels_last,
            compile=compile_model,
            threads=torch.get_num_threads(),
        ),
        "train_img_per_s": rate(images, t_ours).as_dict(),
        "reference_train_img_per_s": rate(images, t_bare).as_dict(),
        "trainer_vs_reference": ratio(t_ours, t_bare).as_dict(),
        # the per-image training statistics' cost: with them over without, same loop
        "train_stats_overhead": ratio(t_stats, t_plain).as_dict(),
        "eval_img_per_s": rate(images, e_ours).as_dict(),
        "reference_eval_img_per_s": rate(images, e_bare).as_dict(),
        "eval_capture_vs_reference": ratio(e_ours, e_bare).as_dict(),
    }


def run(quick: bool = False) -> dict:
    # the demo's CPU setup as the trainer runs it: its model, its thread count beside 1 loader
    # worker, channels_last
    torch.set_num_threads(cpu_threads(DEMO_PRESET["workers"]))
    width = DEMO_PRESET["width"]
    if quick:
        r = measure(width=width, batches=2, repeats=2, batch_size=16, classes=20)
    else:
        r = measure(width=width, batches=6, repeats=5)
    return {"demo_model": r}
