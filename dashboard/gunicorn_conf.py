"""gunicorn settings and hooks (``gunicorn -c python:dashboard.gunicorn_conf``, as the Procfile
does; the repository's gunicorn.conf.py loads them too): the worker class that reads whole
requests with deadlines (dashboard/serving.py), a refusal to bind an exposed address without a
token, and a log line of who may use the server."""

from __future__ import annotations

import sys
from typing import Any

from dashboard import exposure
from dashboard.serving import WORKER_CLASS

#: slow clients cost a socket, not a thread (docs/reliability.md, "Serving"); a command line's
#: --worker-class still wins
worker_class = WORKER_CLASS


def _hosts(server: Any) -> list[str]:
    hosts = []
    for address in server.cfg.address:
        hosts.append(address[0] if isinstance(address, tuple) else f"unix:{address}")
    return hosts


def on_starting(server: Any) -> None:
    """Before any socket is bound: a refusal ends gunicorn with exit code 2 and one line."""
    problem = exposure.refusal(_hosts(server))
    if problem:
        print(problem, file=sys.stderr, flush=True)
        sys.exit(2)


def when_ready(server: Any) -> None:
    server.log.info("Epochscope %s", exposure.describe(_hosts(server)))
