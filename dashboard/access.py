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
- Only the host names it serves are answered (loopback names and IP addresses, and
  ``EPOCHSCOPE_ALLOWED_HOSTS``): a foreign page cannot reach it by DNS rebinding (403).
- A POST from a page of another origin (its ``Origin``, or ``Sec-Fetch-Site: cross-site``) is
  refused (403): callbacks and the API answer the dashboard's own pages and non-browser clients.
- In open mode (no token) a request that a reverse proxy forwarded (X-Forwarded-For, Forwarded,
  X-Real-IP) while no proxy is trusted is not taken as "this machine" (403).
- A callback body that is not a callback of this app (malformed JSON, nested too deep, missing
  or ill-typed fields) gets a 400; a callback or API reply over ``EPOCHSCOPE_MAX_REPLY_MB``
  gets a 413 instead of being sent.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

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


def _forbidden(message: str) -> Response:
    if request.path.startswith("/api/"):
        reply = jsonify({"error": message})
        reply.status_code = 403
        return reply
    return Response(f"403 Forbidden: {message}\n", 403, mimetype="text/plain")


FORWARDED = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def check_token() -> Response | None:
    token = config.token()
    if token is None:
        if config.allow_open():
            return None
        if not exposure.is_loopback(request.remote_addr or ""):
            return _forbidden(
                "this dashboard has no access token, so it answers this machine only; "
                + exposure.HOW
            )
        forwarded = [h for h in FORWARDED if h in request.headers]
        if forwarded and config.trusted_proxies() == 0:
            # a reverse proxy on this machine makes every request come from 127.0.0.1
            return _forbidden(
                f"this request was forwarded by a proxy ({forwarded[0]}) and this dashboard "
                "has no access token, so it answers this machine only; set "
                "EPOCHSCOPE_TRUSTED_PROXIES to the number of proxies in front, and " + exposure.HOW
            )
        return None
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


def host_name(host: str) -> str:
    """'Example.org:8050' -> 'example.org'; '[::1]:8050' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(host: str) -> bool:
    """Whether the dashboard answers a request for ``host`` (its Host header): loopback names,
    IP addresses (a rebinding page has a name of its own, never an address), and
    $EPOCHSCOPE_ALLOWED_HOSTS."""
    name = host_name(host)
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    for allowed in config.allowed_hosts():
        if allowed == "*" or name == allowed.rstrip("."):
            return True
        if allowed.startswith(".") and (name.endswith(allowed) or name == allowed[1:]):
            return True
    return False


def check_host() -> Response | None:
    if host_allowed(request.host):
        return None
    return _forbidden(
        f"this dashboard does not serve the host name {host_name(request.host)!r}; add it to "
        f"{config.ALLOWED_HOSTS_ENV} (comma-separated) to serve it"
    )


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def check_origin() -> Response | None:
    """A state-changing request from another site's page is refused; requests without an
    Origin (curl, scripts, the API's clients) are not browsers' cross-site requests."""
    if request.method in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin is None:
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return _forbidden("a page of another site may not post to this dashboard")
        return None
    netloc = urlsplit(origin).netloc.lower() if origin.lower() != "null" else ""
    if netloc and netloc == request.host.lower():
        return None
    return _forbidden(f"a page of another origin ({origin[:100]}) may not post to this dashboard")


def _bad_request(message: str) -> Response:
    return Response(f"400 Bad Request: {message}\n", 400, mimetype="text/plain")


def callback_problem(body: Any, callbacks: dict[str, dict]) -> str | None:
    """What is wrong with a /_dash-update-component body for these callbacks, or None."""
    if not isinstance(body, dict):
        return "a callback request is a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        return "the request names no callback of this app in 'output'"
    spec = callbacks[output]
    for key in ("inputs", "state"):
        items = body.get(key, [])
        want = len(spec.get(key) or [])
        if not isinstance(items, list) or len(items) != want:
            return f"'{key}' must be a list of {want} values"
        for item in items:
            group = item if isinstance(item, list) else [item]
            if not all(isinstance(i, dict) and "id" in i and "property" in i for i in group):
                return f"each entry of '{key}' needs an 'id' and a 'property'"
    if not isinstance(body.get("outputs"), dict | list):
        return "'outputs' must be an object or a list"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "'changedPropIds' must be a list of strings"
    return None


def check_reply(response: Response) -> Response:
    """A callback or API reply over the reply limit is refused (413), not sent."""
    if response.is_streamed or not (
        request.path.endswith("/_dash-update-component") or request.path.startswith("/api/")
    ):
        return response
    limit = config.max_reply_bytes()
    size = len(response.get_data())
    if size <= limit:
        return response
    message = (
        f"413 the reply would be {size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB reply "
        "limit (EPOCHSCOPE_MAX_REPLY_MB): ask for less"
    )
    return Response(message + "\n", 413, mimetype="text/plain")


def register_callbacks(app: Any) -> None:
    """Check every callback request's body against ``app``'s callbacks (a Dash app)."""

    def check_callback_body() -> Response | None:
        if request.method != "POST" or not request.path.endswith("/_dash-update-component"):
            return None
        try:
            body = request.get_json()  # cached: Dash reads this same object
        except RecursionError:
            return _bad_request("the JSON is nested too deeply")
        problem = callback_problem(body, app.callback_map)
        return _bad_request(problem) if problem else None

    app.server.before_request(check_callback_body)


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
    server.before_request(check_host)  # first: a rebinding page learns nothing
    server.before_request(check_token)  # a stranger learns nothing, not even a limit
    server.before_request(check_origin)
    server.before_request(check_size)
    server.after_request(check_reply)

    @server.errorhandler(RequestEntityTooLarge)
    def too_large(e: RequestEntityTooLarge) -> Response:
        if e.description != RequestEntityTooLarge.description:  # a limit of its own, named
            return Response(f"413 Request Entity Too Large: {e.description}\n", 413,
                            mimetype="text/plain")  # fmt: skip
        return _too_large(config.max_request_bytes())
