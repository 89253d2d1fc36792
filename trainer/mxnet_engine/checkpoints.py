"""MXNet checkpoints: ``epoch-NNNN.params`` (Gluon parameters), ``epoch-NNNN.states`` (the
Trainer's optimizer with its schedule and update count) and ``epoch-NNNN.json`` (epoch, settings,
best epoch). The JSON is written last: an epoch's checkpoint exists once its JSON does."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from epochscope.layout import epoch_file, epoch_of
from epochscope.writer import atomic_write, fsync_dir

SUFFIXES = (".params", ".states", ".json")


def atomic_save(path: Path, save: Callable[[str], None]) -> None:
    """Let ``save(filename)`` write a temporary name, then fsync and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        save(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def save_checkpoint(folder: Path, epoch: int, net, trainer, meta: dict[str, Any]) -> None:
    atomic_save(folder / epoch_file(epoch, ".params"), net.save_parameters)
    atomic_save(folder / epoch_file(epoch, ".states"), trainer.save_states)
    body = json.dumps({"epoch": epoch, **meta}, indent=2) + "\n"
    atomic_write(folder / epoch_file(epoch, ".json"), body.encode())


def checkpoint_epochs(folder: Path) -> list[int]:
    """Epochs with a complete checkpoint (all three files), newest first."""
    found = []
    for meta in folder.glob("epoch-*.json"):
        epoch = epoch_of(meta)
        if epoch is not None and all(
            (folder / epoch_file(epoch, s)).exists() for s in SUFFIXES[:2]
        ):
            found.append(epoch)
    return sorted(found, reverse=True)


def read_meta(folder: Path, epoch: int) -> dict[str, Any]:
    return json.loads((folder / epoch_file(epoch, ".json")).read_text())


def prune(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (all their files)."""
    for epoch in checkpoint_epochs(folder)[keep:]:
        for suffix in SUFFIXES[::-1]:  # the JSON first: a half-pruned epoch is no checkpoint
            with contextlib.suppress(FileNotFoundError):
                (folder / epoch_file(epoch, suffix)).unlink()


def prune_models(folder: Path, keep: int, protect: int | None) -> None:
    """Delete the oldest ONNX models beyond ``keep`` (never epoch ``protect``)."""
    files = sorted((p for p in folder.glob("epoch-*.onnx") if epoch_of(p)), key=epoch_of)
    excess = len(files) - keep
    for p in [p for p in files if epoch_of(p) != protect][: max(0, excess)]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
