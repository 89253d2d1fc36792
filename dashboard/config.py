"""Settings read from the environment at call time (``python -m dashboard`` sets them first)."""

from __future__ import annotations

import os
from pathlib import Path


def runs_dir() -> Path:
    """The folder of run directories: $RUNS_DIR, default ./runs."""
    return Path(os.environ.get("RUNS_DIR", "runs"))


TOKEN_ENV = "EPOCHSCOPE_TOKEN"


def token() -> str | None:
    """The access token an exposed dashboard asks for ($EPOCHSCOPE_TOKEN); None: open."""
    return os.environ.get(TOKEN_ENV) or None
