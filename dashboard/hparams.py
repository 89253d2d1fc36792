"""Hyper-parameters of runs, from run.json: a table of several runs with the differing values
marked, and the text the run picker searches (``lr=0.1 arch=resnet18_v2 ...``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard import runs
from epochscope.records import RunInfo

# run.json's top-level settings shown beside ``hparams`` (hparams wins where both name a key)
TOP_LEVEL = ("engine", "arch", "width", "epochs", "batch_size", "world_size")


def run_hparams(run_dir: Path) -> dict[str, Any]:
    """A run's settings: ``hparams`` plus the top-level ones, {} when run.json is unreadable
    (read once per snapshot of the run: dashboard.runs)."""
    return settings(runs.info(run_dir))


def settings(info: RunInfo | None) -> dict[str, Any]:
    """The settings a run.json records: ``hparams`` plus the top-level ones ({} for None)."""
    if info is None:
        return {}
    # 0 epochs or batch size: not recorded (an imported or own-loop run that did not say)
    out = {k: v for k in TOP_LEVEL if (v := getattr(info, k)) not in (0, None, "")}
    out.update(info.hparams)
    return out


def show(value: Any) -> str:
    """A value as the table shows it: JSON for lists and dicts, else str; '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


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


# keys the search text leaves out: paths and commands that would match almost any query
NOT_SEARCHED = ("data", "runs_dir", "name", "command", "resume", "background")


def search_text(hp: Mapping[str, Any]) -> str:
    """``key=value`` words the run picker matches a typed query against."""
    return " ".join(f"{k}={show(v)}" for k, v in sorted(hp.items()) if k not in NOT_SEARCHED)
