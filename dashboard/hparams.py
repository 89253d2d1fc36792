"""Hyper-parameters of runs, from run.json: a table of several runs with the differing values
marked, and the text the run picker searches (``lr=0.1 arch=resnet18_v2 ...``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard import runs

# run.json's top-level settings shown beside ``hparams`` (hparams wins where both name a key)
TOP_LEVEL = ("engine", "arch", "width", "epochs", "batch_size", "world_size")


def run_hparams(run_dir: Path) -> dict[str, Any]:
    """A run's settings: ``hparams`` plus the top-level ones, {} when run.json is unreadable
    (read once per snapshot of the run: dashboard.runs)."""
    info = runs.info(run_dir)
    if info is None:
        return {}
    out = {k: getattr(info, k) for k in TOP_LEVEL}
    out.update(info.hparams)
    return out


def show(value: Any) -> str:
    """A value as the table shows it: JSON for lists and dicts, else str; '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class HparamRow:
    name: str
    values: list[str]  # one per run, in the runs' order
    differs: bool


def hparam_rows(
    by_run: Mapping[str, Mapping[str, Any]], only_differing: bool = False
) -> list[HparamRow]:
    """One row per setting any run has, sorted by name; differing rows first when several runs
    are shown. A setting one run lacks counts as differing."""
    names = sorted({k for hp in by_run.values() for k in hp})
    rows = []
    for name in names:
        values = [show(hp.get(name)) for hp in by_run.values()]
        differs = len(by_run) > 1 and len(set(values)) > 1
        if differs or not only_differing:
            rows.append(HparamRow(name, values, differs))
    return sorted(rows, key=lambda r: (not r.differs, r.name))


# keys the search text leaves out: paths and commands that would match almost any query
NOT_SEARCHED = ("data", "runs_dir", "name", "command", "resume", "background")


def search_text(hp: Mapping[str, Any]) -> str:
    """``key=value`` words the run picker matches a typed query against."""
    return " ".join(f"{k}={show(v)}" for k, v in sorted(hp.items()) if k not in NOT_SEARCHED)
