"""Access: safe by default (no exposed server without a token or an explicit opt-out), the
token (401 on every route without it, a bounded Secure cookie behind a TLS proxy), request size
limits on every route, no path from a request outside RUNS_DIR or an allowed data root,
checkpoints only with weights_only=True, no pickle from a request.

One real gunicorn with EPOCHSCOPE_TOKEN set (behind one trusted proxy) serves most HTTP tests
here; the start-up tests run ``python -m dashboard`` and the Procfile's ``web`` for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from bench.synthetic_embeddings import write_embeddings
from dashboard import access
from dashboard.confusion import data, service
from epochscope import maps
from epochscope.images import safe_image_path
from epochscope.run import open_run
from tests.conftest import ENGINE_ARGS, ENGINES, REPO, TINY_TRAIN_ARGS, run_cli
from tests.support import DashClient, classify, free_port, gunicorn, http, make_fake_run
from tests.waits import stretched

TOKEN = "s3cret-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
EVIL_RUNS = [
    "..", "../outside", "/etc", "a/../../b", "%2e%2e", "..%2f..%2fetc", "outside-link",
    "./fake", "fake/../fake", "~root", "fake\x00", "\\..\\x",
]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory, request) -> dict:
    """RUNS with a good run, a run outside RUNS reachable by a symlink, and a data root."""
    root = tmp_path_factory.mktemp("security")
    runs, outside, data = root / "runs", root / "outside", root / "data"
    run = make_fake_run(runs, "fake", epochs_done=2)
    make_fake_run(root, "outside", epochs_done=1)
    (runs / "outside-link").symlink_to(outside)
    _drill_paths(run, data, root)
    for mapped in (run, outside):  # the map: the good run's and the one a link would reach
        _map_layouts(mapped)
    # a copied or synced run directory whose data.root is "/"
    _drill_paths(make_fake_run(runs, "rooted", epochs_done=1), None, root, data_root="/")
    server = gunicorn(
        runs,
        env={"EPOCHSCOPE_TOKEN": TOKEN, "EPOCHSCOPE_DATA_ROOTS": str(data),
             "EPOCHSCOPE_TRUSTED_PROXIES": "1", "EPOCHSCOPE_ALLOWED_HOSTS": "dash.example.org"},
    )  # fmt: skip
    base = server.__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    return {"base": base, "runs": runs, "run": run, "data": data, "root": root}


def _drill_paths(run: Path, data: Path | None, root: Path, data_root: str | None = None) -> None:
    """Rows 0-4 are labelled 0 and all guess class 5: their paths are the ones under test."""
    if data is not None:
        data.mkdir()
        Image.new("RGB", (8, 8), (200, 0, 0)).save(data / "ok.png")
        Image.new("RGB", (8, 8), (0, 0, 200)).save(root / "secret.png")
        (data / "link.png").symlink_to(root / "secret.png")
        evil = ["ok.png", "../secret.png", str(root / "secret.png"), "link.png",
                "sub/../../secret.png"]  # fmt: skip
    else:  # data.root "/": paths to readable images anywhere on the machine
        secret = str(root / "secret.png").lstrip("/")
        evil = [secret] * 5
    rows = [(i, 0, evil[i]) if i < 5 else (i, i % 10, f"val/{i}.png") for i in range(20)]
    (run / "val_index.tsv").write_text(
        "row\tlabel\tpath\n" + "".join(f"{i}\t{lab}\t{p}\n" for i, lab, p in rows)
    )
    info = json.loads((run / "run.json").read_text())
    info["data"]["root"] = data_root or str(data)
    (run / "run.json").write_text(json.dumps(info))


def _map_layouts(run: Path) -> None:
    """Embeddings for every epoch and their map layouts in the cache, where the computing
    worker leaves them: rows 0-4 (the paths under test) together at (0.5, 0.5), the rest apart."""
    write_embeddings(run, dims=8)
    coords = np.zeros((20, 2), np.float32)
    coords[:5] = 0.5 + np.arange(5)[:, None] * 0.01
    coords[5:] = np.linspace(-0.9, -0.1, 15)[:, None]
    for epoch in open_run(run).embedding_epochs:
        path = maps.layout_path(run, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, coords)


# --- the token ----------------------------------------------------------------------------------
ROUTES = [
    ("GET", "/"), ("GET", "/classify"), ("GET", "/confusion"), ("GET", "/_dash-layout"),
    ("GET", "/_dash-dependencies"), ("POST", "/_dash-update-component"),
    ("POST", "/api/v1/classify"), ("POST", "/api/v1/similar"), ("GET", "/assets/style.css"),
    ("GET", "/no-such-page"), ("GET", "/_reload-hash"), ("GET", "/_favicon.ico"),
    ("GET", "/labels"), ("GET", "/map"), ("GET", "/map?run=fake"),
    ("GET", "/api/v1/label-issues?run=fake"), ("GET", "/api/v1/calibration?run=fake"),
    ("GET", "/api/v1/report?run=fake"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_token(site, method: str, path: str) -> None:
    base = site["base"]
    data = b"{}" if method == "POST" else None
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "epochscope_auth=forged"},
                    {"Authorization": f"Basic {TOKEN}"}):  # fmt: skip
        reply = http(base + path, data, headers, method=method)
        assert reply.status == 401, (path, headers, reply.status)
        assert TOKEN not in reply.body.decode(errors="replace")
    assert http(base + path + "?token=wrong", data, method=method).status == 401
    assert http(base + path, data, BEARER, method=method).status != 401


def _map_calls(run: str, view: dict | None = None) -> dict[str, tuple]:
    """(output, values, changed) of each of the /map page's callbacks for ``run``; the hover
    and the click at (0.5, 0.5), where rows 0-4 lie, over ``view`` (the map's reply)."""
    event = {"points": [{"x": 0.5, "y": 0.5, "bbox": {"x0": 1, "x1": 2, "y0": 1, "y1": 2}}]}
    return {
        "runs": ("map-run.options", {"shell-runs.value": [run], "map-wanted.data": {"run": run},
                 "map-run.value": None}, ["map-wanted.data"]),
        "epochs": ("map-epoch.max", {"map-run.value": run, "map-refresh.n_intervals": 0},
                   ["map-run.value"]),
        "map": ("map-graph.figure", {"map-run.value": run, "map-epoch.value": 2,
                "map-colour.value": "band", "map-graph.relayoutData": None,
                "map-poll.n_intervals": None, "map-view.data": None}, ["map-run.value"]),
        "hover": ("map-tooltip.show", {"map-graph.hoverData": event, "map-view.data": view,
                  "map-run.value": run}, ["map-graph.hoverData"]),
        "drill": ("map-drill.children", {"map-graph.clickData": event, "map-view.data": view,
                  "map-run.value": run}, ["map-graph.clickData"]),
        "legend": ("map-legend.children", {"map-run.value": run, "map-colour.value": "band"},
                   ["map-run.value"]),
    }  # fmt: skip


def _map_view(client: DashClient, run: str = "fake") -> dict:
    reply = client.call(*_map_calls(run)["map"])
    assert reply.status == 200, reply.body[:300]
    view = reply.json()["response"]["map-view"]["data"]
    assert view and view["grid"], "the good run's map is not drawn"
    return view


def test_every_map_callback_needs_the_token(site) -> None:
    """Each of /map's callbacks, sent as the page sends it: 401 without the token (or with a
    wrong one), answered with it."""
    client = DashClient(site["base"], BEARER)
    view = _map_view(client)
    for what, (output, values, changed) in _map_calls("fake", view).items():
        body = client.body(output, values, changed)
        url = site["base"] + "/_dash-update-component"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            reply = http(url, body, {"Content-Type": "application/json", **headers})
            assert reply.status == 401, (what, headers, reply.status)
            assert b"map-" not in reply.body  # nothing of the reply leaks
        reply = http(url, body, {"Content-Type": "application/json", **BEARER})
        assert reply.status == 200, (what, reply.status, reply.body[:300])


@pytest.mark.parametrize("run", EVIL_RUNS)
def test_map_callbacks_choose_no_run_outside(site, run: str) -> None:
    """A run name that leaves RUNS_DIR (the symlinked run has embeddings and a layout, so
    following it would draw a map): no map, no tooltip, no images; never a 500."""
    client = DashClient(site["base"], BEARER)
    view = _map_view(client)  # a real view, so only the run name is wrong
    calls = _map_calls(run, view)
    listing = client.call(*calls["runs"])
    assert listing.status == 200
    assert [o["value"] for o in listing.json()["response"]["map-run"]["options"]] == [
        "fake", "rooted"]  # fmt: skip
    for what in ("epochs", "map", "drill", "legend"):
        reply = client.call(*calls[what])
        assert reply.status == 204, (what, reply.status, reply.body[:300])
    hover = client.call(*calls["hover"])
    assert hover.status == 200 and hover.json()["response"]["map-tooltip"]["show"] is False


def test_the_map_drill_down_shows_only_images_from_the_data_root(site) -> None:
    """A click where rows 0-4 lie: their paths escape the data root in four ways, only
    ok.png is inside it."""
    client = DashClient(site["base"], BEARER)
    reply = client.call(*_map_calls("fake", _map_view(client))["drill"])
    assert reply.status == 200, reply.body[:300]
    text = reply.body.decode()
    assert "map-drill-head" in text and text.count('"map-image"') == 12
    assert text.count("data:image") == 1  # ok.png only
    assert text.count("no image") == 11  # the four escapes and 7 rows without a file


def test_token_in_the_url_once_sets_a_strict_httponly_cookie(site) -> None:
    base = site["base"]
    reply = http(base + f"/confusion?run=fake&token={TOKEN}")
    assert reply.status == 303
    assert reply.headers["Location"].endswith("/confusion?run=fake")  # the token is dropped
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    pair = cookie.split(";", 1)[0]
    assert http(base + "/confusion?run=fake", headers={"Cookie": pair}).status == 200
    assert http(base + "/_dash-layout", headers={"Cookie": pair}).status == 200


def test_the_comparison_is_constant_time() -> None:
    source = (REPO / "dashboard" / "access.py").read_text()
    assert "hmac.compare_digest" in source
    assert not re.search(r"==\s*token|token\s*==", source)


def test_the_cli_and_procfile_take_the_token() -> None:
    from dashboard.__main__ import build_parser

    assert build_parser().parse_args(["--token", "T"]).token == "T"
    assert "dashboard.app:server" in (REPO / "Procfile").read_text()  # reads $EPOCHSCOPE_TOKEN


# --- safe by default: start-up ------------------------------------------------------------------
START_ENV = {k: v for k, v in os.environ.items()
             if k not in ("EPOCHSCOPE_TOKEN", "EPOCHSCOPE_ALLOW_OPEN")}  # fmt: skip


def _start(cmd: list[str] | str, env: dict[str, str], runs: Path, wait: float = 60) -> tuple:
    """Start a server command; (exit code or None while it runs, output so far, process)."""
    proc = subprocess.Popen(
        cmd, shell=isinstance(cmd, str), cwd=REPO, env={**START_ENV, "RUNS_DIR": str(runs), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=wait)
        return proc.returncode, out, proc
    except subprocess.TimeoutExpired:
        return None, "", proc


def _stop(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    return out


def _one_line_refusal(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    line = lines[0]
    assert "EPOCHSCOPE_TOKEN" in line and "--allow-open" in line, line
    return line


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_an_exposed_dev_server_without_a_token_refuses_to_start(tmp_path: Path, host) -> None:
    rc, out, _ = _start([sys.executable, "-m", "dashboard", "--host", host, "--port",
                         str(free_port())], {}, tmp_path)  # fmt: skip
    assert rc == 2, out
    assert host in _one_line_refusal(out)


@pytest.mark.parametrize("argv", [["--token", ""], ["--token", "  "]])
def test_an_empty_token_is_refused_not_dropped(tmp_path: Path, argv) -> None:
    rc, out, _ = _start([sys.executable, "-m", "dashboard", "--port", str(free_port()), *argv],
                        {}, tmp_path)  # fmt: skip
    assert rc == 2 and "--token is empty" in out, out
    rc, out, _ = _start([sys.executable, "-m", "dashboard", "--host", "0.0.0.0", "--port",
                         str(free_port())], {"EPOCHSCOPE_TOKEN": ""}, tmp_path)  # fmt: skip
    assert rc == 2 and "EPOCHSCOPE_TOKEN is set but empty" in _one_line_refusal(out), out


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            http(f"http://127.0.0.1:{port}/_dash-layout", timeout=5)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the server did not start")


@pytest.mark.slow  # a real server or a large decode: seconds
def test_allow_open_starts_an_exposed_dev_server_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    rc, _, proc = _start([sys.executable, "-m", "dashboard", "--host", "0.0.0.0", "--port",
                          str(port), "--allow-open"], {}, tmp_path, wait=3)  # fmt: skip
    assert rc is None, "the explicit opt-out must start"
    try:
        _wait_listening(port, proc)
        assert http(f"http://127.0.0.1:{port}/").status == 200
    finally:
        out = _stop(proc)
    assert "access: OPEN to anyone who can reach 0.0.0.0" in out, out


def _procfile_web(port: int) -> str:
    line = next(x for x in (REPO / "Procfile").read_text().splitlines() if x.startswith("web:"))
    command = line.split(":", 1)[1].strip().replace("${PORT:-8050}", str(port))
    # the same gunicorn as the venv's, found the way a platform's PATH would find it
    return f"PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH {command}"


def test_the_procfile_web_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    rc, out, _ = _start(_procfile_web(free_port()), {}, tmp_path)
    assert rc not in (None, 0), out
    assert "0.0.0.0" in _one_line_refusal(out)


@pytest.mark.slow  # a real server or a large decode: seconds
def test_the_procfile_web_with_a_token_asks_for_it_everywhere(tmp_path: Path) -> None:
    make_fake_run(tmp_path / "runs", "fake", epochs_done=1)
    port = free_port()
    rc, _, proc = _start(_procfile_web(port), {"EPOCHSCOPE_TOKEN": TOKEN}, tmp_path / "runs",
                         wait=3)  # fmt: skip
    assert rc is None
    try:
        _wait_listening(port, proc)
        base = f"http://127.0.0.1:{port}"
        for method, path in ROUTES:
            reply = http(base + path, b"{}" if method == "POST" else None, method=method)
            assert reply.status == 401, (path, reply.status)
        assert http(base + "/", headers=BEARER).status == 200
    finally:
        out = _stop(proc)
    assert "access: token required" in out, out


@pytest.mark.slow  # a real server or a large decode: seconds
def test_an_open_server_answers_only_this_machine(tmp_path: Path) -> None:
    """gunicorn started some other way (no start-up check) and no token: a peer that is not
    this machine gets 403, here a client behind the one trusted proxy."""
    make_fake_run(tmp_path / "runs", "fake", epochs_done=1)
    with gunicorn(tmp_path / "runs", env={"EPOCHSCOPE_TRUSTED_PROXIES": "1"}) as base:
        assert http(base + "/").status == 200  # this machine
        far = {"X-Forwarded-For": "203.0.113.7"}
        for method, path in ROUTES:
            reply = http(base + path, b"{}" if method == "POST" else None, far, method=method)
            assert reply.status == 403, (path, reply.status)
        assert "EPOCHSCOPE_TOKEN" in http(base + "/", headers=far).body.decode()


# --- the cookie -------------------------------------------------------------------------------
def _cookie(reply) -> str:
    return reply.headers["Set-Cookie"]


def test_the_cookie_is_secure_behind_a_tls_proxy_and_lives_a_bounded_time(site) -> None:
    base = site["base"]
    plain = _cookie(http(base + f"/?token={TOKEN}"))
    assert "Secure" not in plain  # plain HTTP on loopback
    behind = _cookie(http(base + f"/?token={TOKEN}", headers={"X-Forwarded-Proto": "https"}))
    assert "Secure" in behind and "HttpOnly" in behind and "SameSite=Strict" in behind
    max_age = int(re.search(r"Max-Age=(\d+)", behind).group(1))
    assert 0 < max_age <= 7 * 86400
    expires = int(behind.split("=", 1)[1].split(".", 1)[0])
    assert abs(expires - (time.time() + max_age)) < 60  # the server checks this expiry too


def test_an_expired_or_forged_cookie_is_refused(site) -> None:
    base = site["base"]
    past = access.cookie_value(TOKEN, int(time.time()) - 1)
    longer = access.cookie_value(TOKEN, int(time.time()) + 3600)
    longer = f"{int(longer.split('.')[0]) + 10**6}.{longer.split('.')[1]}"  # expiry edited
    for value in (past, longer, "9" * 12 + ".abc", "x"):
        assert http(base + "/", headers={"Cookie": f"epochscope_auth={value}"}).status == 401
    good = access.cookie_value(TOKEN, int(time.time()) + 60)
    assert http(base + "/", headers={"Cookie": f"epochscope_auth={good}"}).status == 200


# --- request size -------------------------------------------------------------------------------
def test_a_50_mb_callback_body_gets_413(site) -> None:
    base = site["base"]
    body = b'{"output": "x", "inputs": [], "pad": "' + b"a" * (50 * 2**20) + b'"}'
    headers = {"Content-Type": "application/json", **BEARER}
    reply = http(base + "/_dash-update-component", body, headers)
    assert reply.status == 413, reply
    assert b"MB limit" in reply.body
    for path in ("/", "/_dash-layout", "/assets/style.css"):
        assert http(base + path, body, headers, method="POST").status == 413, path
    assert http(base + "/_dash-update-component", body, {}).status == 401  # token first


def test_a_chunked_body_over_the_limit_gets_413(site) -> None:
    """No Content-Length: the limit applies while the body is read."""
    from http.client import HTTPConnection
    from urllib.parse import urlparse

    parts = urlparse(site["base"])
    conn = HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        chunks = (b"[" + b"1," * (2**20 // 2) for _ in range(40))  # 40 MB, never closed
        headers = {"Content-Type": "application/json", **BEARER}
        conn.request("POST", "/_dash-update-component", chunks, headers, encode_chunked=True)
        reply = conn.getresponse()
        assert reply.status == 413, (reply.status, reply.read()[:200])
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed before all 40 MB went out
    finally:
        conn.close()


# --- paths from requests ------------------------------------------------------------------------
@pytest.mark.parametrize("run", EVIL_RUNS)
def test_api_run_names_cannot_leave_runs_dir(site, run: str) -> None:
    photo = (site["data"] / "ok.png").read_bytes()
    reply = classify(site["base"], photo, "ok.png", headers=BEARER, run=run)
    assert reply.status in (400, 404), (run, reply.status, reply.body[:200])
    reply = classify(site["base"], photo, "ok.png", headers=BEARER, run="fake", epoch="../1")
    assert reply.status == 400


@pytest.mark.parametrize("route", ["label-issues", "calibration"])
def test_label_api_run_names_cannot_leave_runs_dir(site, route: str) -> None:
    for run in EVIL_RUNS:
        reply = http(f"{site['base']}/api/v1/{route}?{urlencode({'run': run})}", headers=BEARER)
        assert reply.status in (400, 404), (run, reply.status, reply.body[:200])
        assert "error" in reply.json()
    # the good run answers: it predates the label arrays, so it says what is missing
    reply = http(f"{site['base']}/api/v1/{route}?run=fake", headers=BEARER)
    assert reply.status == 409 and "no label scores" in reply.json()["error"]


def test_the_good_run_answers(site) -> None:
    photo = (site["data"] / "ok.png").read_bytes()
    assert classify(site["base"], photo, "ok.png", headers=BEARER, run="fake").status == 200


def test_training_callback_refuses_runs_outside(site) -> None:
    client = DashClient(site["base"], BEARER)
    reply = client.call(
        "training-state.data",
        {"shell-runs.value": EVIL_RUNS, "training-interval.n_intervals": 1},
        ["shell-runs.value"],
    )
    assert reply.status == 200
    body = reply.json()["response"]
    assert body["training-state"]["data"]["runs"] == []  # nothing from outside was read
    errors = body["training-errors"]["children"]
    assert "points outside the runs directory" in errors and "invalid run name" in errors


@pytest.mark.parametrize("search", ["?run=../outside", "?run=%2e%2e%2foutside", "?run=/etc",
                                    "?run=outside-link"])  # fmt: skip
def test_page_query_strings_choose_no_run_outside(site, search: str) -> None:
    assert http(site["base"] + "/confusion" + search, headers=BEARER).status == 200
    client = DashClient(site["base"], BEARER)
    reply = client.call(
        "shell-runs-known.data",
        {"shell-location.search": search, "shell-runs-interval.n_intervals": 0},
        ["shell-location.search"],
    )
    assert reply.status == 200
    body = reply.json()["response"]
    names = [o["value"] for o in body["shell-runs"]["options"]]
    assert sorted(names) == ["fake", "rooted"]  # the symlinked run is not listed
    assert set(body["shell-runs"].get("value") or []) <= {"fake", "rooted"}  # not followed
    for run in ("../outside", "outside-link", "/etc"):
        zoom = client.call(
            "confusion-graph.figure",
            {"confusion-run.value": run, "confusion-epoch.value": 1,
             "confusion-mode.value": "top5", "confusion-order.value": "index",
             "confusion-scale.value": "linear"},
            ["confusion-run.value"],
        )  # fmt: skip
        assert zoom.status == 204, run


def _drill(site, run: str) -> dict:
    client = DashClient(site["base"], BEARER)
    reply = client.call(
        "confusion-drill.children",
        {"confusion-pairs.active_cell": {"row": 0, "column": 0},
         "confusion-pairs.derived_viewport_data": [{"true_index": 0, "pred_index": 5}],
         "confusion-view.data": {"epoch": 1}, "confusion-run.value": run,
         "confusion-mode.value": "top5", "confusion-order.value": "index"},
        ["confusion-pairs.active_cell"],
    )  # fmt: skip
    assert reply.status == 200, reply.body[:300]
    return reply.json()


def test_a_run_rooted_at_slash_serves_no_thumbnail(site) -> None:
    """run.json says data.root is "/": every path is inside it, but "/" is not allowed."""
    text = json.dumps(_drill(site, "rooted"))
    assert "data:image" not in text
    assert text.count("no image") >= 5  # rows 0-4 point at a readable image outside any root
    assert "confusion-drill-note" in text and "not an allowed folder" in text
    assert "--data-root" in text
    run = site["runs"] / "rooted"
    assert all(im.thumbnail is None for im in service.drill(data.run(run), 1, "top5", 0, 5))
    # allowing "/" on purpose is the operator's choice, and then the images show
    allowed = service.drill(data.run(run), 1, "top5", 0, 5, allowed=[Path("/")])
    assert all(im.thumbnail for im in allowed if im.row < 5)


def test_drilldown_thumbnails_come_only_from_the_data_root(site) -> None:
    """The data root is allowed (EPOCHSCOPE_DATA_ROOTS): still nothing outside it."""
    text = json.dumps(_drill(site, "fake"))
    assert text.count("data:image/jpeg;base64") == 1  # ok.png only
    assert text.count("no image") == 5  # the four escapes, and row 10's missing val/10.png
    assert "confusion-drill-note" not in text
    images = service.drill(data.run(site["run"]), 1, "top5", 0, 5, allowed=[site["data"]])
    assert [im.path for im in images if im.thumbnail] == ["ok.png"]


def test_safe_image_path_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"s")
    (root / "up").symlink_to(tmp_path)
    assert safe_image_path(str(root), "a/x.png") == root / "a" / "x.png"
    for rel in ["../secret", "a/../../secret", "/etc/passwd", str(tmp_path / "secret"),
                "up/secret", "a\\..\\..\\secret", "a/x.png\x00", "~/secret", "", "a",
                "%2e%2e/secret"]:  # fmt: skip
        assert safe_image_path(str(root), rel) is None, rel
    assert safe_image_path("relative/root", "a/x.png") is None


# --- no pickle ----------------------------------------------------------------------------------
def _python_sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_every_torch_load_is_weights_only() -> None:
    calls = 0
    for path in _python_sources("trainer"):
        for m in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls += 1
            assert "weights_only=True" in m.group(1), f"{path}: torch.load({m.group(1)})"
    assert calls >= 2


def test_every_np_load_refuses_pickle() -> None:
    for folder in ("dashboard", "trainer"):
        for path in _python_sources(folder):
            for m in re.finditer(r"np\.load\(([^)]*)\)", path.read_text()):
                assert "allow_pickle=False" in m.group(1), f"{path}: np.load({m.group(1)})"
    for path in _python_sources("dashboard"):
        text = path.read_text()
        assert not re.search(r"^\s*(import pickle|from pickle)|pickle\.loads?\(", text, re.M), path


class _Planted:
    """Unpickling this would create a file: proof that a checkpoint ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_not_run(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from trainer.session import newest_checkpoint
    from trainer.train import load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({"epoch": 1, "model": {}}, ckpt / "epoch-0001.pt")
    torch.save({"epoch": 2, "evil": _Planted(str(marker))}, ckpt / "epoch-0002.pt")
    (ckpt / "epoch-0003.pt").write_bytes(pickle.dumps(_Planted(str(marker))))
    path, state, notes = newest_checkpoint(ckpt, ".pt", load_checkpoint)
    assert path.name == "epoch-0001.pt" and state["epoch"] == 1
    assert len(notes) == 2 and not marker.exists()


def _plant(run: Path, engine: str, marker: Path) -> list[str]:
    """Checkpoints newer than the run's last that would run code if unpickled; their names."""
    folder = run / "checkpoints"
    last = max(int(p.name[6:10]) for p in folder.glob("epoch-*"))
    evil = pickle.dumps(_Planted(str(marker)))
    if engine == "pytorch":
        import torch

        torch.save(
            {"epoch": last + 1, "evil": _Planted(str(marker))}, folder / f"epoch-{last + 1:04d}.pt"
        )
        (folder / f"epoch-{last + 2:04d}.pt").write_bytes(evil)
        return [f"epoch-{last + e:04d}.pt" for e in (1, 2)]
    names = []
    for e in (last + 1, last + 2, last + 3):
        stem = folder / f"epoch-{e:04d}"
        shutil.copy(folder / f"epoch-{last:04d}.params", f"{stem}.params")
        (folder / f"{stem}.json").write_text(json.dumps({"engine": "mxnet", "epoch": e}))
        names.append(f"{stem.name}.json")
    (folder / f"epoch-{last + 1:04d}.states").write_bytes(evil)  # Trainer.save_states' format
    (folder / f"epoch-{last + 2:04d}.states.npz").write_bytes(evil)  # a pickle, named .npz
    with (folder / f"epoch-{last + 3:04d}.states.npz").open("wb") as f:  # an object array
        np.savez(f, num_update=np.array([_Planted(str(marker))], dtype=object))
    return names


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_resume_never_unpickles_a_planted_checkpoint(engine, tiny_run, demo_data, tmp_path):
    runs, marker = tmp_path / "runs", tmp_path / "pwned"
    common = ("trainer", "train", *ENGINE_ARGS[engine], "--data", str(demo_data), "--runs-dir",
              str(runs), "--name", "r", *TINY_TRAIN_ARGS, "--epochs", "1")  # fmt: skip
    if engine == "pytorch":
        shutil.copytree(tiny_run, runs / "r")
    else:
        run_cli(*common)
    planted = _plant(runs / "r", engine, marker)
    proc = run_cli(*common, "--resume", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "nothing to do" in out, out[-3000:]
    for name in planted:
        assert f"checkpoint {name} does not load" in out, out[-3000:]
    assert not marker.exists()


def test_a_pickled_prediction_file_is_refused(site) -> None:
    run = make_fake_run(site["root"] / "p", "pickled", epochs_done=1)
    marker = site["root"] / "pwned-npz"
    evil = np.array([_Planted(str(marker))], dtype=object)
    with (run / "predictions" / "epoch-0001.npz").open("wb") as f:
        np.savez(f, top5=evil, prob=evil)
    from epochscope.reader import load_predictions

    with pytest.raises(ValueError):
        load_predictions(run, 1)
    assert not marker.exists()


# --- foreign pages: host names, origins, forwarded requests (issue 22) ---------------------------
@pytest.fixture(scope="module")
def open_site(tmp_path_factory, request) -> dict:
    """No token, no trusted proxy: the default of a dashboard on 127.0.0.1."""
    root = tmp_path_factory.mktemp("open")
    make_fake_run(root / "runs", "fake", epochs_done=1)
    env = {"EPOCHSCOPE_HEADER_SECONDS": "2"}
    server = gunicorn(root / "runs", workers=2, env=env)
    base = server.__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    return {"base": base, "port": int(base.rsplit(":", 1)[1])}


def test_a_dns_rebinding_host_name_is_refused(open_site, site) -> None:
    """A page on attacker.example whose name now resolves to 127.0.0.1 sends its own name."""
    port = open_site["port"]
    for method, path in ROUTES:
        data = b"{}" if method == "POST" else None
        reply = http(open_site["base"] + path, data, {"Host": f"attacker.example:{port}"},
                     method=method)  # fmt: skip
        assert reply.status == 403, (path, reply.status)
        assert b"EPOCHSCOPE_ALLOWED_HOSTS" in reply.body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert http(open_site["base"] + "/", headers={"Host": host}).status == 200, host
    # a name of one's own is served once allowed; others still are not, token or no token
    base = site["base"]
    assert http(base + "/", headers={"Host": "dash.example.org", **BEARER}).status == 200
    assert http(base + "/", headers={"Host": "evil.example.org", **BEARER}).status == 403


def test_a_post_from_a_foreign_origin_is_refused(open_site) -> None:
    base, port = open_site["base"], open_site["port"]
    client = DashClient(base)
    values = {"shell-runs.value": ["fake"]}
    for origin in ("http://attacker.example", f"http://attacker.example:{port}", "null"):
        reply = http(base + "/_dash-update-component", client.body("shell-nav-0.href", values, []),
                     {"Content-Type": "application/json", "Origin": origin})  # fmt: skip
        assert reply.status == 403, (origin, reply.status)
        photo = classify(base, b"not a photo", "x.jpg", {"Origin": origin})
        assert photo.status == 403 and "another origin" in photo.json()["error"]
    cross = {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}
    body = client.body("shell-nav-0.href", values, [])
    assert http(base + "/_dash-update-component", body, cross).status == 403
    same = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
    assert http(base + "/_dash-update-component", body, same).status == 200
    assert http(base + "/_dash-update-component", body, {"Content-Type": "application/json"}
                ).status == 200  # no Origin: not a browser's cross-site request  # fmt: skip


def test_a_request_forwarded_by_an_untrusted_proxy_is_not_this_machine(open_site) -> None:
    """A reverse proxy on this machine makes every request come from 127.0.0.1."""
    base = open_site["base"]
    for header in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"},
                   {"X-Real-IP": "203.0.113.7"}):  # fmt: skip
        for method, path in ROUTES:
            reply = http(base + path, b"{}" if method == "POST" else None, header, method=method)
            assert reply.status == 403, (header, path, reply.status)
        assert b"EPOCHSCOPE_TRUSTED_PROXIES" in http(base + "/", headers=header).body
    assert http(base + "/").status == 200


# --- malformed callback bodies and amplification (issue 22) --------------------------------------
MALFORMED = [
    b"{}", b"[]", b"null", b"not json", b"[" * 100_000, b'{"output": "nope.children"}',
    b'{"output": "shell-nav-0.href...shell-nav-1.href", "outputs": {}, "inputs": []}',
    b'{"output": "classify-results.children", "outputs": {}, "inputs": 5, "state": []}',
    b'{"output": "classify-results.children", "outputs": 1, "inputs": [1, 2], "state": [3]}',
]  # fmt: skip


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_callback_body_gets_400(site, body: bytes) -> None:
    headers = {"Content-Type": "application/json", **BEARER}
    reply = http(site["base"] + "/_dash-update-component", body, headers)
    assert reply.status == 400, (reply.status, reply.body[:300])


def _classify_call(site, uploads: dict) -> Any:
    client = DashClient(site["base"], BEARER)
    values = {"classify-uploads.data": uploads, "classify-epoch.value": 1,
              "classify-run.value": "fake"}  # fmt: skip
    return client.call("classify-results.children", values, ["classify-uploads.data"])


def test_the_classifier_page_refuses_lists_over_its_limits(site) -> None:
    """A 2.3 MB request made a 67 MB reply in 23 s: one result card per entry it was sent."""
    skipped = [[f"photo {i}.jpg", "not sent: x"] for i in range(60_000)]
    reply = _classify_call(site, {"contents": [], "names": [], "skipped": skipped})
    assert reply.status == 413 and b"at most 32 entries in 'skipped'" in reply.body, reply
    assert reply.seconds < stretched(5) and len(reply.body) < 1000
    too_many = {"contents": ["data:image/png;base64,AAAA"] * 17, "names": ["a"] * 17}
    assert _classify_call(site, too_many).status == 413
    long_name = {"contents": [], "skipped": [["x" * 10_000, "y"]]}
    assert _classify_call(site, long_name).status == 413
    within = {"contents": [], "skipped": [[f"p{i}.jpg", "not sent"] for i in range(32)]}
    reply = _classify_call(site, within)
    assert reply.status == 200 and reply.body.count(b"p31.jpg") == 1


def test_a_reply_over_the_reply_limit_is_refused(monkeypatch) -> None:
    from flask import Flask

    server = Flask("reply-limit")
    access.register(server)

    @server.get("/api/big")
    def big():
        return "x" * 200_000

    monkeypatch.setenv("EPOCHSCOPE_MAX_REPLY_MB", "0.1")
    reply = server.test_client().get("/api/big")
    assert reply.status_code == 413 and b"EPOCHSCOPE_MAX_REPLY_MB" in reply.data
    monkeypatch.setenv("EPOCHSCOPE_MAX_REPLY_MB", "1")
    assert server.test_client().get("/api/big").status_code == 200


# --- the debugger, and the server python -m dashboard runs (issue 22) ----------------------------
@pytest.mark.parametrize(
    "argv", [["--token", "T"], ["--host", "0.0.0.0", "--allow-open"], ["--allow-open"]]
)
def test_debug_is_refused_beyond_the_keyboard(tmp_path: Path, argv: list[str]) -> None:
    rc, out, _ = _start([sys.executable, "-m", "dashboard", "--debug", "--port",
                         str(free_port()), *argv], {}, tmp_path)  # fmt: skip
    assert rc == 2, out
    assert "error: --debug serves a Python console" in out


@pytest.mark.slow  # a real server or a large decode: seconds
def test_python_m_dashboard_serves_with_the_production_server(tmp_path: Path) -> None:
    port = free_port()
    rc, _, proc = _start([sys.executable, "-m", "dashboard", "--port", str(port)], {}, tmp_path,
                         wait=3)  # fmt: skip
    assert rc is None
    try:
        _wait_listening(port, proc)
    finally:
        out = _stop(proc)
    assert "Using worker: dashboard.serving.BufferedWorker" in out, out
    assert "development server" not in out.lower(), out


# --- slow clients (issue 22) ---------------------------------------------------------------------
@pytest.mark.slow
def test_slow_clients_do_not_starve_the_server(open_site) -> None:
    """16 connections that send a header line every second (more than the 2 x 4 threads of the
    gthread worker this replaced, which froze): a user is still answered at once, and each
    slow connection is closed at the header deadline (EPOCHSCOPE_HEADER_SECONDS=2 here)."""
    import socket

    port = open_site["port"]
    slow = []
    for _ in range(16):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.append(s)
    try:
        times = []
        for n in range(8):
            for s in slow:
                with contextlib.suppress(OSError):
                    s.sendall(f"X-Slow-{n}: 1\r\n".encode())
            times.append(http(open_site["base"] + "/_dash-layout", timeout=10).seconds)
            time.sleep(0.5)
        assert max(times) < stretched(2), times
        closed = 0
        for s in slow:
            s.settimeout(5)
            try:
                closed += s.recv(1024) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == len(slow)
    finally:
        for s in slow:
            s.close()
