"""Who may make a request, and how big it may be: every route, Dash callbacks and assets
included.

- With a token (``--token`` / ``$EPOCHSCOPE_TOKEN``) every route asks for it: a Bearer header,
  or the cookie that opening any page once with ``?token=`` sets (an HMAC with an expiry, not
  the token), or 401.
- Without a token and without ``EPOCHSCOPE_ALLOW_OPEN``, only this machine may ask (403 for any
  other peer): a server bound to 0.0.0.0 by some other path than ours is still not open.
- Behind ``EPOCHSCOPE_TRUSTED_PROXIES`` reverse proxies, X-Forwarded-For/-Proto/-Host are
  believed (werkzeug's ProxyFix): the client address is the real one and the cookie is Secure
  when the proxy speaks HTTPS.
- A request body over ``EPOCHSCOPE_MAX_REQUEST_MB`` gets a 413 before it is read.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from dashboard import config, exposure

COOKIE = "epochscope_auth"


def cookie_value(token: str, expires: int) -> str:
    """``EXPIRES.HMAC``: the digest binds the expiry, so a cookie cannot be made to live longer."""
    mac = hmac.new(token.encode(), f"epochscope-cookie:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def cookie_valid(value: str | None, token: str, now: float | None = None) -> bool:
    if not value or "." not in value:
        return False
    expires, _, _ = value.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return _same(value, cookie_value(token, int(expires)))


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _too_large(limit: int) -> Response:
    message = (
        f"413 Request Entity Too Large: the request is over the {limit / 2**20:.0f} MB limit "
        "(EPOCHSCOPE_MAX_REQUEST_MB)"
    )
    if request.path.startswith("/api/"):
        reply = jsonify({"error": message})
        reply.status_code = 413
        return reply
    return Response(message + "\n", 413, mimetype="text/plain")


def check_token() -> Response | None:
    token = config.token()
    if token is None:
        if config.allow_open() or exposure.is_loopback(request.remote_addr or ""):
            return None
        return Response(
            "403 Forbidden: this dashboard has no access token, so it answers this machine "
            f"only; {exposure.HOW}\n",
            403,
            mimetype="text/plain",
        )
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    if _same(bearer, token) or cookie_valid(request.cookies.get(COOKIE), token):
        return None
    if _same(request.args.get("token"), token):
        # drop the token from the address bar (history, Referer), keep it in a cookie
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        reply = redirect(request.path + ("?" + urlencode(rest) if rest else ""), code=303)
        lifetime = config.cookie_seconds()
        reply.set_cookie(
            COOKIE,
            cookie_value(token, int(time.time()) + lifetime),
            max_age=lifetime,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure or config.secure_cookie(),
        )
        return reply
    return Response(
        "401 Unauthorized: this dashboard needs its access token\n",
        401,
        {"WWW-Authenticate": 'Bearer realm="epochscope"'},
        mimetype="text/plain",
    )


def check_size() -> Response | None:
    limit = config.max_request_bytes()
    length = request.content_length
    if length is not None and length > limit:
        return _too_large(limit)
    return None


class ChunkedBodyLimit:
    """WSGI middleware: a body without Content-Length (chunked) is read here, up to the limit,
    and handed on with its length, or answered 413. werkzeug's own limit would pass the first
    ``limit`` bytes on silently, which Dash then reports as a malformed request (400)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if (
            environ.get("CONTENT_LENGTH")
            or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            return self.app(environ, start_response)
        stream, body = environ["wsgi.input"], bytearray()
        while len(body) <= self.limit:
            chunk = stream.read(min(1 << 16, self.limit + 1 - len(body)))
            if not chunk:
                break
            body.extend(chunk)
        if len(body) > self.limit:
            message = "413 Request Entity Too Large: the request is over the "
            message += f"{self.limit / 2**20:.0f} MB limit (EPOCHSCOPE_MAX_REQUEST_MB)\n"
            start_response("413 Request Entity Too Large",
                           [("Content-Type", "text/plain"), ("Connection", "close")])  # fmt: skip
            return [message.encode()]
        environ["wsgi.input"] = io.BytesIO(bytes(body))
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def register(server: Flask) -> None:
    """Install the checks on the Flask server under Dash (before any route runs)."""
    proxies = config.trusted_proxies()
    if proxies:
        server.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            server.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    server.wsgi_app = ChunkedBodyLimit(  # type: ignore[method-assign]
        server.wsgi_app, config.max_request_bytes()
    )
    server.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes()
    server.before_request(check_token)  # first: a stranger learns nothing, not even a limit
    server.before_request(check_size)

    @server.errorhandler(RequestEntityTooLarge)
    def too_large(_e: RequestEntityTooLarge) -> Response:
        return _too_large(config.max_request_bytes())
