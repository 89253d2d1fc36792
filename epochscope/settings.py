"""A run's settings as run.json records them, and the words the run picker searches
(``lr=0.1 arch=resnet18_v2 ...``): pure functions of a :class:`RunInfo`, used by the provider's
search words and the training page's table alike."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from epochscope.records import RunInfo

# run.json's top-level settings shown beside ``hparams`` (hparams wins where both name a key)
TOP_LEVEL = ("engine", "arch", "width", "epochs", "batch_size", "world_size")
# keys the search text leaves out: paths and commands that would match almost any query
NOT_SEARCHED = ("data", "runs_dir", "name", "command", "resume", "background")


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


def search_text(hp: Mapping[str, Any]) -> str:
    """``key=value`` words the run picker matches a typed query against."""
    return " ".join(f"{k}={show(v)}" for k, v in sorted(hp.items()) if k not in NOT_SEARCHED)
