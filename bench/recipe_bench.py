"""Time to accuracy on real photos: the trainer's default recipe against a plain, well-tuned
PyTorch loop (bench/recipe_reference.py), same model and stem, epochs, batch and threads.

Data: ``../shared/data/real-photos-10`` (10 classes x 500 train / 100 val real 32 x 32 photos;
``EPOCHSCOPE_REAL_PHOTOS`` elsewhere). Each pair runs *side by side*, one thread each on this
2-core machine, so whatever else loads the machine slows both alike (sequential runs minutes
apart saw different neighbours). The trainer runs as a user runs it (``python -m trainer
train``: JPEG folder, its own loader and recipe, per-epoch evaluation, predictions, ONNX models
and checkpoints); the reference decodes the photos into tensors itself and evaluates each epoch.

Pairs: ``small`` (the trainer's default at 32 px: small-image stem) and ``imagenet`` (both with
the ImageNet stem; the trainer with ``--recipe seed`` runs beside them, three on two cores, so
only the small pair's throughput is a key). Keys:
``recipe_top1_vs_reference`` (small pair, last-epoch val top-1), ``recipe_img_per_s_vs_reference``
(small pair, training img/s over all epochs), ``recipe_top1_vs_imagenet_stem`` (the trainer's
default over the ImageNet-stem reference).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import fixtures

REAL_PHOTOS = Path(
    os.environ.get("EPOCHSCOPE_REAL_PHOTOS", fixtures.REPO.parent / "shared/data/real-photos-10")
)
MODEL = {"width": 0.25, "batch_size": 128, "image_size": 32}


def _subset(src: Path, dst: Path, train: int, val: int) -> Path:
    """The first ``train`` / ``val`` photos of every class (quick mode)."""
    if (dst / ".done").exists():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    for split, n in (("train", train), ("val", val)):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            (dst / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                shutil.copy(f, dst / split / cls.name / f.name)
    (dst / ".done").touch()
    return dst


def _harmonic(rates: list[float]) -> float:
    """img/s over the whole run from equal-sized epochs' rates."""
    return len(rates) / sum(1 / r for r in rates)


def _trainer_cmd(data: Path, runs: Path, name: str, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--data", str(data), "--runs-dir",
            str(runs), "--name", name, "--arch", "resnet18_v2", "--width", str(MODEL["width"]),
            "--batch-size", str(MODEL["batch_size"]), "--image-size", str(MODEL["image_size"]),
            "--epochs", str(epochs), "--seed", "0", *extra]  # fmt: skip


def _reference_cmd(data: Path, out: Path, stem: str, epochs: int) -> list[str]:
    return [sys.executable, "-m", "bench.recipe_reference", str(data), "--stem", stem,
            "--width", str(MODEL["width"]), "--batch-size", str(MODEL["batch_size"]),
            "--epochs", str(epochs), "--threads", "1", "--out", str(out)]  # fmt: skip


def _side_by_side(cmds: list[list[str]], timeout: float) -> list[float]:
    """Start every command at once (one thread each); wall seconds of each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=fixtures.REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in cmds]  # fmt: skip
    walls = []
    for cmd, proc in zip(cmds, procs, strict=True):
        try:
            out, _ = proc.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{' '.join(cmd[2:4])} ran past {timeout:.0f} s") from None
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:5])} failed ({proc.returncode}):\n{out[-2000:]}")
    return walls


def _trainer_result(run: Path, wall: float) -> dict:
    epochs = fixtures.epoch_events(run)
    info = json.loads((run / "run.json").read_text())
    rates = [e["img_per_s"] for e in epochs]
    return {
        "val_top1": epochs[-1]["val_top1"],
        "val_top1_per_epoch": [e["val_top1"] for e in epochs],
        "epoch_img_per_s": rates,
        "img_per_s": _harmonic(rates),
        "wall_seconds": wall,
        "stem": info["hparams"]["stem"],
        "recipe": info["hparams"]["recipe"],
        "loader": info["data"]["loader"],
        "lr_schedule": info["hparams"]["lr_schedule"],
    }


def run(quick: bool = False, cache: Path = fixtures.CACHE) -> dict:
    if not (REAL_PHOTOS / "train").is_dir():
        return {"skipped": f"no real photos at {REAL_PHOTOS} (set EPOCHSCOPE_REAL_PHOTOS)"}
    data = _subset(REAL_PHOTOS, cache / "real-photos-quick", 16, 4) if quick else REAL_PHOTOS
    epochs = 1 if quick else 6
    timeout = 280 if quick else 1500
    work = cache / "recipe"
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    out: dict = {"config": {**MODEL, "arch": "resnet18_v2", "epochs": epochs, "data": str(data),
                            "threads_each": 1, "side_by_side": True}}  # fmt: skip
    for stem in ("small", "imagenet"):
        name = f"recipe-{stem}"
        extra = () if stem == "small" else ("--stem", "imagenet")
        ref_json = work / f"reference-{stem}.json"
        cmds = [_trainer_cmd(data, runs, name, epochs, *extra),
                _reference_cmd(data, ref_json, stem, epochs)]  # fmt: skip
        if stem == "imagenet":  # the cheap runs together: only the small pair's img/s is a key
            cmds.append(_trainer_cmd(data, runs, "recipe-seed", epochs, "--recipe", "seed"))
        walls = _side_by_side(cmds, timeout)
        trainer = _trainer_result(runs / name, walls[0])
        reference = {**json.loads(ref_json.read_text()), "wall_seconds": walls[1]}
        out[stem] = {"trainer": trainer, "reference": reference}
        if stem == "imagenet":
            out["seed_recipe"] = _trainer_result(runs / "recipe-seed", walls[2])
    small, imagenet = out["small"], out["imagenet"]
    out["recipe_top1_vs_reference"] = small["trainer"]["val_top1"] / max(
        small["reference"]["val_top1"], 1e-9
    )
    out["recipe_img_per_s_vs_reference"] = (
        small["trainer"]["img_per_s"] / small["reference"]["img_per_s"]
    )
    out["recipe_top1_vs_imagenet_stem"] = small["trainer"]["val_top1"] / max(
        imagenet["reference"]["val_top1"], 1e-9
    )
    out["imagenet_stem_top1_vs_reference"] = imagenet["trainer"]["val_top1"] / max(
        imagenet["reference"]["val_top1"], 1e-9
    )
    return out
