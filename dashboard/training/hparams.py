"""Hyper-parameters of runs, from run.json: a table of several runs with the differing values
marked, and the text the run picker searches (``lr=0.1 arch=resnet18_v2 ...``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dashboard import runs
from epochscope import Runs
from epochscope.settings import search_text, settings, show

__all__ = ["HparamRow", "hparam_rows", "run_hparams", "search_text", "settings", "show"]


def run_hparams(name: str, provider: Runs | None = None) -> dict[str, Any]:
    """A run's settings: ``hparams`` plus the top-level ones, {} when run.json is unreadable
    (read once per snapshot of the run, through the provider)."""
    return settings((provider or runs.provider()).info(name))


#: settings shown first (after those that differ): what a reader looks for in any run
WELL_KNOWN = (
    "engine", "arch", "model", "width", "epochs", "batch_size", "world_size", "lr",
    "learning_rate", "opt", "optimizer", "momentum", "weight_decay", "sched", "lr_schedule",
    "warmup_epochs", "image_size", "img_size", "smoothing", "label_smoothing", "aa", "mixup",
    "cutmix", "amp", "dataset", "num_classes", "seed",
)  # fmt: skip
#: a table longer than this folds the settings that are neither differing nor well known
FOLD_AFTER = 12


@dataclass(frozen=True)
class HparamRow:
    name: str
    values: list[str]  # one per run, in the runs' order
    differs: bool
    folded: bool = False  # shown under "N more settings"


def hparam_rows(
    by_run: Mapping[str, Mapping[str, Any]], only_differing: bool = False
) -> list[HparamRow]:
    """One row per setting any run has: differing rows first when several runs are shown, then
    the well-known settings, then the rest by name (``folded`` when there are more than
    FOLD_AFTER rows). A setting one run lacks counts as differing."""
    names = sorted({k for hp in by_run.values() for k in hp})
    rows = []
    for name in names:
        values = [show(hp.get(name)) for hp in by_run.values()]
        differs = len(by_run) > 1 and len(set(values)) > 1
        if differs or not only_differing:
            rows.append(HparamRow(name, values, differs))
    rank = {k: i for i, k in enumerate(WELL_KNOWN)}
    rows.sort(key=lambda r: (not r.differs, rank.get(r.name, len(rank)), r.name))
    if len(rows) > FOLD_AFTER:
        rows = [
            HparamRow(r.name, r.values, r.differs, not r.differs and r.name not in rank)
            for r in rows
        ]
    return rows
