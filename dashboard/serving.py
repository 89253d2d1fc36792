"""The dashboard's server: gunicorn with a worker that reads every request whole, with deadlines,
on an event loop, before one of its threads runs the app (docs/reliability.md, "Serving").

gunicorn's threaded worker gives each connection a thread as soon as its first bytes arrive and
then reads the headers with no deadline: 8 clients sending a header line every 3 s froze the
Procfile's 2 x 4 threads for everyone. ``BufferedWorker`` reads requests on tornado's event loop
instead, where a slow connection costs a socket and a few bytes, not a thread:

- the request line and headers must arrive within ``EPOCHSCOPE_HEADER_SECONDS`` (10 s; also
  how long an idle kept-alive connection stays open), the body within
  ``EPOCHSCOPE_BODY_SECONDS`` (120 s), or the connection is closed;
- a body over ``EPOCHSCOPE_MAX_REQUEST_MB`` is not read (its Content-Length says so) or, sent
  chunked, kept no further than the limit: the app answers from its size (token first, 413);
- the bodies being received by one worker hold at most ``EPOCHSCOPE_BUFFER_MB`` (96 MB: three
  at the request limit) together; a request that would go over gets a 503;
- only whole requests reach the app, on ``--threads`` threads (gunicorn's own setting).

The Procfile's ``web`` and ``python -m dashboard`` both run it (``serve``); TLS belongs to a
proxy in front (docs/reliability.md).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gtornado import TornadoWorker
from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.wsgi import WSGIContainer

from dashboard import config

WORKER_CLASS = "dashboard.serving.BufferedWorker"


def header_seconds() -> float:
    """Time for a request's line and headers, and an idle connection's life (default 10 s)."""
    return config.number("EPOCHSCOPE_HEADER_SECONDS", 10.0, 0.1)


def body_seconds() -> float:
    """Time for a request's body once its headers are in (default 120 s: 32 MB at 280 kB/s)."""
    return config.number("EPOCHSCOPE_BODY_SECONDS", 120.0, 0.1)


def buffer_bytes() -> int:
    """Request bodies one worker holds while they arrive, together (default 96 MB: three at the
    request limit; a worker decodes two photos at a time, so more would only wait)."""
    return int(config.number("EPOCHSCOPE_BUFFER_MB", 96, 0.01) * 2**20)


class _Budget:
    """Bytes of request bodies held by this process, against ``buffer_bytes``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


class _Request(httputil.HTTPMessageDelegate):
    """One request on its way in: refused early when it cannot fit, else buffered whole and
    handed to the WSGI app."""

    def __init__(self, front: BufferedApp, conn: httputil.HTTPConnection) -> None:
        self.front, self.conn = front, conn
        self.request: httputil.HTTPServerRequest | None = None
        self.chunks: list[bytes] = []
        self.size = self.held = 0
        self.refused: tuple[int, str] | None = None

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> None:
        self.request = httputil.HTTPServerRequest(
            connection=self.conn, start_line=start_line, headers=headers
        )
        length = headers.get("Content-Length", "")
        declared = int(length) if length.isdigit() else 0
        if declared > self.front.limit:
            self._oversize(declared)
        elif not self._hold(declared):
            self._refuse(503, "the server is receiving too much at once: try again shortly")

    def _hold(self, n: int) -> bool:
        if n <= self.held:
            return True
        if not self.front.budget.take(n - self.held):
            return False
        self.held = n
        return True

    def _oversize(self, size: int) -> None:
        """A body over the limit is not kept: the app sees its size with no body and answers
        (its token check first, then the 413); tornado closes the connection after."""
        assert self.request is not None
        self.refused = (413, "over the request limit")
        self.chunks = []
        self._release()
        self.request.headers["Content-Length"] = str(size)
        self.request.headers.pop("Transfer-Encoding", None)
        self.request.body = b""
        IOLoop.current().spawn_callback(self._serve)

    def _refuse(self, status: int, message: str) -> None:
        """Answer now; tornado closes the connection instead of reading the rest."""
        self.refused = (status, message)
        body = f"{status} {httputil.responses.get(status, '')}: {message}\n".encode()
        headers = httputil.HTTPHeaders(
            {"Content-Type": "text/plain", "Content-Length": str(len(body)), "Connection": "close"}
        )
        if status == 503:
            headers["Retry-After"] = "2"
        start = httputil.ResponseStartLine("HTTP/1.1", status, httputil.responses.get(status, ""))
        self.conn.write_headers(start, headers, body)
        self.conn.finish()

    def data_received(self, chunk: bytes) -> None:
        if self.refused:
            return
        self.size += len(chunk)
        if self.size > self.front.limit:
            self._oversize(self.size)  # sent chunked: kept no further than the limit
        elif not self._hold(self.size):
            self.chunks = []
            self._refuse(503, "the server is receiving too much at once: try again shortly")
        else:
            self.chunks.append(chunk)

    def finish(self) -> None:
        if self.refused or self.request is None:
            self._release()
            return
        self.request.body = b"".join(self.chunks)
        self.chunks = []
        IOLoop.current().spawn_callback(self._serve)

    async def _serve(self) -> None:
        try:
            await self.front.container.handle_request(self.request)  # type: ignore[arg-type]
        finally:
            self.request = None
            self._release()

    def on_connection_close(self) -> None:
        self.chunks = []
        self._release()

    def _release(self) -> None:
        if self.held:
            self.front.budget.give(self.held)
            self.held = 0


class BufferedApp(httputil.HTTPServerConnectionDelegate):
    """A WSGI app behind tornado's HTTP server: whole requests only, run on a thread pool."""

    def __init__(self, wsgi: Any, threads: int, limit: int, budget: int) -> None:
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="epochscope-wsgi")
        self.container = WSGIContainer(wsgi, executor=self.pool)
        self.limit = limit
        self.budget = _Budget(budget)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> Any:
        return _Request(self, request_conn)


class BufferedWorker(TornadoWorker):
    """gunicorn worker: tornado reads and buffers requests, ``--threads`` threads run the app.

    gunicorn's ``--timeout`` watches the event loop, which never runs the app; an app that
    hangs is bounded by its own limits (the model's time budget)."""

    def run(self) -> None:
        if not self.alive:  # stopped while the app was loading: gtornado's run would not stop
            return
        self.ioloop = IOLoop.current()
        self.server_alive = False
        self.callbacks = [PeriodicCallback(self.watchdog, 1000),
                          PeriodicCallback(self.heartbeat, 1000)]  # fmt: skip
        for callback in self.callbacks:
            callback.start()
        limit = config.max_request_bytes()
        app = BufferedApp(self.wsgi, self.cfg.threads, limit, buffer_bytes())
        self.server = HTTPServer(
            app,
            no_keep_alive=self.cfg.keepalive <= 0,
            decompress_request=False,
            idle_connection_timeout=header_seconds(),
            body_timeout=body_seconds(),
            max_body_size=2 * limit,  # read (not kept) while the app's answer goes out
            max_header_size=64 * 1024,
        )
        self.server_alive = True
        for sock in self.sockets:
            sock.setblocking(False)
            self.server.add_socket(sock)
        self.ioloop.start()
        app.pool.shutdown(wait=False, cancel_futures=True)


class DashboardServer(BaseApplication):
    """gunicorn run from Python (``python -m dashboard``) with the Procfile's set-up."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from dashboard.app import server

        return server


def serve(host: str, port: int, workers: int = 1, threads: int = 4) -> None:
    """Serve the dashboard like the Procfile's ``web`` (gunicorn, BufferedWorker, the start-up
    check and log of ``dashboard.gunicorn_conf``); returns when gunicorn stops."""
    from dashboard import gunicorn_conf

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": WORKER_CLASS,
        "timeout": 120,
        "on_starting": gunicorn_conf.on_starting,
        "when_ready": gunicorn_conf.when_ready,
        "control_socket_disable": True,
    }
    if os.environ.get("EPOCHSCOPE_ACCESS_LOG"):
        options["accesslog"] = "-"
    DashboardServer(options).run()
