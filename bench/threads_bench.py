"""The demo's thread choice on CPU: the trainer's default (``trainer.data.cpu_threads``: the
cores its loader workers leave free) against one thread per core (PyTorch's own default).

Real ``python -m trainer train --demo --epochs 2`` runs on the 100-class demo set, alternated;
the figure is epoch 2's training img/s from metrics.jsonl. The runs with OMP_NUM_THREADS set to
the core count are what the demo did before the trainer chose its threads.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench import fixtures
from bench.harness import stat


def _epoch2_rate(data: Path, runs: Path, name: str, env: dict[str, str], extra: tuple) -> float:
    run = fixtures.train(data, runs, name, "--demo", "--epochs", "2", *extra, env=env)
    return float(fixtures.epoch_events(run)[-1]["img_per_s"])


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    cores = str(os.cpu_count() or 1)
    if quick:
        data = fixtures.demo_data(4, train_per_class=8, val_per_class=2, cache=cache)
    else:
        data = fixtures.demo_data(100, cache=cache)
    extra = ("--batch-size", "8") if quick else ()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    rates: dict[str, list[float]] = {"auto": [], "per_core": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(1 if quick else 2):
            for side in ("per_core", "auto") if k % 2 == 0 else ("auto", "per_core"):
                side_env = env if side == "auto" else {**env, "OMP_NUM_THREADS": cores}
                rates[side].append(_epoch2_rate(data, Path(tmp), f"{side}-{k}", side_env, extra))
    return {
        "config": {"data": data.name, "preset": "--demo", "cores": int(cores)},
        "auto_img_per_s": stat(rates["auto"], "img/s").as_dict(),
        "per_core_img_per_s": stat(rates["per_core"], "img/s").as_dict(),
        "auto_vs_per_core": stat(
            [a / p for a, p in zip(rates["auto"], rates["per_core"], strict=True)], "ratio"
        ).as_dict(),
    }
