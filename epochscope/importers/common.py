"""What both importers share: where the run goes, and writing epochs and steps."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default="runs", help="where the run directory goes (default runs)")
    p.add_argument("--name", help="run name (default: the folder's name, made a valid run name)")
    p.add_argument("--resume", action="store_true",
                   help="add to an existing run of that name (its epochs are kept)")  # fmt: skip


def run_name(folder: Path, name: str | None) -> str:
    if name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-._")
    return (cleaned or "imported")[:64]


def fraction(value: float) -> float:
    """An accuracy as a fraction: timm and many loggers write percentages."""
    return value / 100.0 if value > 1.0 else value
