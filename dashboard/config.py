"""Settings read from the environment at call time (``python -m dashboard`` sets them first).

Every limit is an environment variable so ``python -m dashboard``, gunicorn and the Procfile
read them the same way; docs/dashboard.md "Limits" lists them.
"""

from __future__ import annotations

import os
from pathlib import Path


def runs_dir() -> str:
    """The folder of run directories or a bucket URL: $RUNS_DIR, default ./runs."""
    return os.environ.get("RUNS_DIR", "runs")


TOKEN_ENV = "EPOCHSCOPE_TOKEN"
ALLOW_OPEN_ENV = "EPOCHSCOPE_ALLOW_OPEN"
DATA_ROOTS_ENV = "EPOCHSCOPE_DATA_ROOTS"


def token() -> str | None:
    """The access token an exposed dashboard asks for ($EPOCHSCOPE_TOKEN); None: open.

    A blank value counts as no token here; ``exposure.refusal`` refuses to start with one.
    """
    value = os.environ.get(TOKEN_ENV)
    return value.strip() or None if value is not None else None


def token_is_blank() -> bool:
    """$EPOCHSCOPE_TOKEN is set but empty: a mistake, never a way to run open."""
    value = os.environ.get(TOKEN_ENV)
    return value is not None and not value.strip()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def warm_up_at_start() -> bool:
    """Compile the drawing kernels when the app loads ($EPOCHSCOPE_WARM_UP, default on).

    Off (``0``), numba compiles them on the first drawn matrix or map instead: for test servers
    and scripts that start many short-lived dashboards and draw little.
    """
    return os.environ.get("EPOCHSCOPE_WARM_UP", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def allow_open() -> bool:
    """$EPOCHSCOPE_ALLOW_OPEN=1 (or ``--allow-open``): serve other machines without a token."""
    return _flag(ALLOW_OPEN_ENV)


def number(name: str, default: float, minimum: float = 0.0) -> float:
    """A numeric setting; a malformed or too small value falls back to the default."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= minimum else default


def max_upload_bytes() -> int:
    """Largest photo accepted ($EPOCHSCOPE_MAX_UPLOAD_MB, default 20)."""
    return int(number("EPOCHSCOPE_MAX_UPLOAD_MB", 20, 0.001) * 2**20)


def max_request_bytes() -> int:
    """Largest request body on any route ($EPOCHSCOPE_MAX_REQUEST_MB). The default, 32 MB,
    fits one photo at the upload limit base64-encoded in a Dash callback (20 MB -> 26.7 MB)."""
    default = max(32.0, max_upload_bytes() * 4 / 3 / 2**20 + 2)
    return int(number("EPOCHSCOPE_MAX_REQUEST_MB", default, 0.01) * 2**20)


def max_files() -> int:
    """Photos classified per request of the classifier page ($EPOCHSCOPE_MAX_FILES, 16)."""
    return int(number("EPOCHSCOPE_MAX_FILES", 16, 1))


def decode_slots() -> int:
    """Photos one worker process decodes at a time ($EPOCHSCOPE_DECODE_SLOTS, default 2)."""
    return int(number("EPOCHSCOPE_DECODE_SLOTS", 2, 1))


def decode_wait_seconds() -> float:
    """How long an upload waits for a decode slot before a 503 ($EPOCHSCOPE_DECODE_WAIT_S)."""
    return number("EPOCHSCOPE_DECODE_WAIT_S", 0.25)


def max_selected_runs() -> int:
    """Runs one page draws at once; a longer selection is cut ($EPOCHSCOPE_MAX_RUNS, 12)."""
    return int(number("EPOCHSCOPE_MAX_RUNS", 12, 1))


def gif_max_frames() -> int:
    """Epochs in a GIF export at most; longer runs are sampled evenly ($EPOCHSCOPE_GIF_FRAMES)."""
    return int(number("EPOCHSCOPE_GIF_FRAMES", 60, 2))


def trusted_proxies() -> int:
    """Reverse proxies in front whose X-Forwarded-For/-Proto/-Host are believed
    ($EPOCHSCOPE_TRUSTED_PROXIES, default 0: none)."""
    return int(number("EPOCHSCOPE_TRUSTED_PROXIES", 0))


def secure_cookie() -> bool:
    """Always mark the access cookie Secure ($EPOCHSCOPE_SECURE_COOKIE=1), not only over HTTPS."""
    return _flag("EPOCHSCOPE_SECURE_COOKIE")


def cookie_seconds() -> int:
    """Lifetime of the access cookie ($EPOCHSCOPE_COOKIE_DAYS, default 7 days)."""
    return max(60, int(number("EPOCHSCOPE_COOKIE_DAYS", 7, 0.001) * 86400))


def data_roots() -> list[Path]:
    """Folders the drill-down may read thumbnails from ($EPOCHSCOPE_DATA_ROOTS, separated by
    ``os.pathsep``; ``--data-root``). Only absolute paths count; default none."""
    roots = []
    for part in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep):
        part = part.strip()
        if part and os.path.isabs(part):
            roots.append(Path(part))
    return roots


ALLOWED_HOSTS_ENV = "EPOCHSCOPE_ALLOWED_HOSTS"


def allowed_hosts() -> list[str]:
    """Host names the dashboard answers to besides loopback names and IP addresses
    ($EPOCHSCOPE_ALLOWED_HOSTS, comma-separated; ``.example.org`` also allows its subdomains,
    ``*`` any name). A request for another name is refused: a foreign page cannot reach the
    dashboard by DNS rebinding."""
    return [
        h.strip().lower() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()
    ]


def max_reply_bytes() -> int:
    """Largest callback reply sent ($EPOCHSCOPE_MAX_REPLY_MB, default 32); a bigger one is
    refused with a 413 instead of being sent."""
    return int(number("EPOCHSCOPE_MAX_REPLY_MB", 32, 0.01) * 2**20)
