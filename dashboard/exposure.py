"""Safe by default: may the dashboard serve on these addresses, and what does start-up say?

A dashboard that other machines can reach needs an access token, or an explicit opt-out
(``--allow-open`` / ``EPOCHSCOPE_ALLOW_OPEN=1``). ``python -m dashboard`` and gunicorn (through
``dashboard.gunicorn_conf``) both ask ``refusal`` before they bind and log ``describe``.
"""

from __future__ import annotations

import ipaddress

from dashboard import config

HOW = (
    "set a token (export EPOCHSCOPE_TOKEN=$(openssl rand -hex 16), or --token for "
    "python -m dashboard), or serve it open on purpose with --allow-open / EPOCHSCOPE_ALLOW_OPEN=1"
)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost, a unix
    socket). 0.0.0.0, ::, '' and every other name or address count as exposed."""
    host = host.strip().strip("[]")
    if host.startswith("unix:") or host.startswith("/"):
        return True
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(hosts: list[str]) -> str | None:
    """The one-line reason not to start on ``hosts``, or None when starting is fine."""
    if config.token_is_blank():
        return f"error: {config.TOKEN_ENV} is set but empty; {HOW}"
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed and config.token() is None and not config.allow_open():
        where = ", ".join(h or "all addresses" for h in exposed)
        return f"error: refusing to serve {where} without an access token: {HOW}"
    return None


def describe(hosts: list[str]) -> str:
    """What start-up logs about access."""
    if config.token() is not None:
        return "access: token required on every route (EPOCHSCOPE_TOKEN)"
    if all(is_loopback(h) for h in hosts):
        return "access: open, to this machine only (no token)"
    return (
        "access: OPEN to anyone who can reach " + ", ".join(hosts) + " (no token; allowed "
        "explicitly by --allow-open / EPOCHSCOPE_ALLOW_OPEN)"
    )
