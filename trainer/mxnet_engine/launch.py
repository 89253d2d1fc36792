"""``python -m trainer train --engine mxnet ...``: hand the command to the MXNet environment.

The current process re-executes itself (``os.execve``) as ``.venv-mxnet/bin/python -m
trainer.mxnet_engine ARGS``: the same pid, so signals (``trainer stop``'s SIGTERM, Ctrl-C, a
kill -9), the pid in trainer.pid and the exit code all belong to the engine itself, and no parent
is left to forward them or to outlive it. Imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from trainer.mxnet_engine import VENV_DIR

REPO = Path(__file__).resolve().parents[2]
PYTHON_ENV = "EPOCHSCOPE_MXNET_PYTHON"  # overrides the interpreter, e.g. a conda env's python


def engine_of(argv: Sequence[str]) -> str | None:
    """The value of ``--engine`` in ``argv`` (``--engine X`` or ``--engine=X``), else None."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--engine" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--engine="):
            return arg.split("=", 1)[1]
    return None


def strip_engine(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--engine`` option (for an engine whose parser lacks it)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--engine":
            skip = True
        elif not arg.startswith("--engine="):
            out.append(arg)
    return out


def mxnet_python() -> Path:
    override = os.environ.get(PYTHON_ENV)
    return Path(override) if override else REPO / VENV_DIR / "bin" / "python"


def exec_engine(argv: Sequence[str]) -> int:
    """Replace this process by the MXNet engine; returns only when that cannot start (2)."""
    python = mxnet_python()
    if not os.access(python, os.X_OK):
        print(
            f"error: the MXNet engine needs its own environment, and {python} is missing: "
            "run `make install-mxnet` (CUDA 11.2 GPUs: `make install-mxnet "
            "MXNET_PACKAGE=mxnet-cu112`)",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    # the engine imports trainer.* from this checkout; .venv-mxnet has no install of it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [str(python), "-m", "trainer.mxnet_engine", *argv], env)
    return 2  # not reached
