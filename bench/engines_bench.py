"""MXNet against PyTorch (issue 9): the same model, data, batch and threads, real runs.

``python -m trainer train --engine mxnet|pytorch --demo --epochs 2`` on the 100-class demo set
(resnet18_v2 width 0.25, 32 px, batch 144), alternated engine by engine; the figure is epoch 2's
training img/s from metrics.jsonl (epoch 1 pays start-up and warm-up).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import fixtures
from bench.harness import stat

MXNET_PYTHON = fixtures.REPO / ".venv-mxnet" / "bin" / "python"
# one thread each: what the PyTorch trainer picks beside the demo's one loader worker
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _epoch2_rate(data: Path, runs: Path, engine: str, k: int, extra: tuple) -> float:
    run = fixtures.train(data, runs, f"{engine}-{k}", "--engine", engine, "--demo",
                         "--epochs", "2", *extra, env=THREADS)  # fmt: skip
    return float(fixtures.epoch_events(run)[-1]["img_per_s"])


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    if not MXNET_PYTHON.exists():
        return {"skipped": ".venv-mxnet is absent (make install-mxnet)"}
    data = (
        fixtures.demo_data(4, train_per_class=8, val_per_class=2, cache=cache)
        if quick
        else fixtures.demo_data(100, cache=cache)
    )
    extra = ("--batch-size", "8") if quick else ()
    rates: dict[str, list[float]] = {"mxnet": [], "pytorch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(1 if quick else 2):
            for engine in ("mxnet", "pytorch") if k % 2 == 0 else ("pytorch", "mxnet"):
                rates[engine].append(_epoch2_rate(data, Path(tmp), engine, k, extra))
    return {
        "config": {"data": data.name, "preset": "--demo", "threads": THREADS["OMP_NUM_THREADS"]},
        "mxnet_img_per_s": stat(rates["mxnet"], "img/s").as_dict(),
        "pytorch_img_per_s": stat(rates["pytorch"], "img/s").as_dict(),
        "mxnet_vs_pytorch": stat(
            [m / p for m, p in zip(rates["mxnet"], rates["pytorch"], strict=True)], "ratio"
        ).as_dict(),
    }
