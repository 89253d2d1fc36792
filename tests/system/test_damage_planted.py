"""Each damaged run of issue 20, planted beside a good run served by a real gunicorn.

One worker with four threads (the Procfile's shape), one server for the module: each damaged
run is copied in beside the ones before it, every surface that reads it is called at once (more
requests than the worker has threads), and while they run the good run's pages and callbacks
are timed: each must answer within 2 s, nothing may answer 500, the worker's RSS must stay under
600 MiB, and the drill-down must serve no image from outside the allowed roots. The map's files
are planted too: a hostile embeddings file (a zip bomb) and the run's cached layouts (outside
the run, in the cache folder) as a FIFO or /dev/zero. The figures (peak RSS, slowest good
answer, slowest damaged answer) are printed per damage and written to damage-figures.json
beside the runs folder.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import struct
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.synthetic_embeddings import write_embeddings
from epochscope import maps, reader
from tests.support import (
    DashClient,
    Reply,
    gunicorn,
    gunicorn_pids,
    http,
    make_fake_run,
    multipart,
    rss_mib,
)
from tests.waits import stretched

GOOD_WITHIN_S = 2.0
RSS_LIMIT_MIB = 600.0
DAMAGED_TIMEOUT_S = 30.0  # a damaged request still open after this holds a worker thread
DAMAGES = ["fifo", "zero", "sparse-metrics", "hierarchy-chain", "npz-bomb", "preprocess-8192",
           "thumbnails-root", "embeddings-bomb", "map-cache-fifo", "map-cache-zero"]  # fmt: skip
BOMB_ROWS = 20_000_000
EMBEDDING_BOMB_ROWS = 3_000_000  # x 128 float16: 768 MB of zeros, ~750 KB deflated


def _png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buf = BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def _bomb(path: Path) -> None:
    """An npz whose top5 declares BOMB_ROWS x 5 int32 (zeros, ~390 KB deflated), prob small."""
    header = f"{{'descr': '<i4', 'fortran_order': False, 'shape': ({BOMB_ROWS}, 5), }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy_head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    prob = BytesIO()
    np.lib.format.write_array(prob, np.full((20, 5), 0.2, np.float32))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("top5.npy", "w", force_zip64=True) as f:
            f.write(npy_head)
            zeros = bytes(4 << 20)
            left = BOMB_ROWS * 5 * 4
            while left:
                f.write(zeros[: min(left, len(zeros))])
                left -= min(left, len(zeros))
        z.writestr("prob.npy", prob.getvalue())


def _embeddings_bomb(path: Path) -> None:
    """An embeddings file whose vectors declare EMBEDDING_BOMB_ROWS x 128 float16 (zeros,
    deflated); the projection is sound."""
    header = f"{{'descr': '<f2', 'fortran_order': False, 'shape': ({EMBEDDING_BOMB_ROWS}, 128), }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy_head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("vectors.npy", "w", force_zip64=True) as f:
            f.write(npy_head)
            zeros = bytes(4 << 20)
            left = EMBEDDING_BOMB_ROWS * 128 * 2
            while left:
                f.write(zeros[: min(left, len(zeros))])
                left -= min(left, len(zeros))
        for name, array in (("mean", np.zeros(16, np.float32)),
                            ("components", np.eye(128, 16, dtype=np.float32))):  # fmt: skip
            buf = BytesIO()
            np.lib.format.write_array(buf, array)
            z.writestr(f"{name}.npy", buf.getvalue())


def map_layouts(run: Path) -> None:
    """Embeddings of each epoch and their layouts in the cache, as the computing worker
    leaves them (computing one is tested in tests/system/test_browser_map.py)."""
    write_embeddings(run, dims=8)
    for epoch in reader.embedding_epochs(run):
        path = maps.layout_path(run, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        coords = np.random.default_rng(epoch).uniform(-1, 1, (20, 2)).astype(np.float32)
        coords[0] = MAP_EVENT["points"][0]["x"], MAP_EVENT["points"][0]["y"]  # under the click
        np.save(path, coords)


def _edit_run_json(run: Path, **changes) -> None:
    info = json.loads((run / "run.json").read_text())
    for key, value in changes.items():
        outer, _, inner = key.partition(".")
        if inner:
            info[outer][inner] = value
        else:
            info[outer] = value
    (run / "run.json").write_text(json.dumps(info))


def plant(kind: str, runs: Path, secret: Path, bomb: Path) -> str:
    """Copy in the damaged run ``kind``; its name."""
    name = f"x-{kind}"
    # the newest run: the training page loads its predictions by itself
    run = make_fake_run(runs, name, epochs_done=2, started=1_900_000_000.0 + len(os.listdir(runs)))
    if kind in ("fifo", "zero"):
        # data.root inside the run (always allowed) holding demo.json; run.json predates
        # data.synthetic, so the classifier page looks for the marker; thumbnails.bin read by
        # the drill-down for rows without an image file
        (run / "data").mkdir()
        _edit_run_json(run, **{"data.root": str(run / "data")})
        for target in (run / "data" / "demo.json", run / "thumbnails.bin"):
            os.mkfifo(target) if kind == "fifo" else target.symlink_to("/dev/zero")
    elif kind == "sparse-metrics":
        with (run / "metrics.jsonl").open("r+b") as f:
            f.truncate(768 << 20)  # 768 MB, all but the first lines one unterminated hole
    elif kind == "hierarchy-chain":
        rows = ["id\tparent\tname", "c0\t\troot"]
        rows += [f"c{i}\tc{i - 1}\tlevel {i}" for i in range(1, 6000)]
        wnids = [line.split("\t")[1] for line in (run / "classes.tsv").read_text().splitlines()[1:]]
        rows += [f"{w}\tc5999\t{w}" for w in wnids]
        (run / "hierarchy.tsv").write_text("\n".join(rows) + "\n")
    elif kind == "npz-bomb":
        for epoch in (1, 2):
            shutil.copyfile(bomb, run / "predictions" / f"epoch-{epoch:04d}.npz")
    elif kind == "preprocess-8192":
        _edit_run_json(run, **{"preprocess.image_size": 8192, "preprocess.resize_size": 8192})
    elif kind == "thumbnails-root":
        # no --data-root: the run's own thumbnails/ is all the drill-down may show, and it
        # leads to /; every validation path names a picture outside the runs folder
        (run / "thumbnails").symlink_to("/")
        rel = str(secret).lstrip("/")
        lines = (run / "val_index.tsv").read_text().splitlines()
        fixed = [lines[0]] + [
            f"{r.split(chr(9))[0]}\t{r.split(chr(9))[1]}\t{rel}" for r in lines[1:]
        ]
        (run / "val_index.tsv").write_text("\n".join(fixed) + "\n")
    elif kind == "embeddings-bomb":
        for epoch in (1, 2):
            _embeddings_bomb(run / "embeddings" / f"epoch-{epoch:04d}.npz")
    elif kind in ("map-cache-fifo", "map-cache-zero"):
        map_layouts(run)
        for epoch in (1, 2):
            path = maps.layout_path(run, epoch)
            path.unlink()
            os.mkfifo(path) if kind == "map-cache-fifo" else path.symlink_to("/dev/zero")
    else:
        raise AssertionError(kind)
    return name


def _upload(png: bytes) -> dict:
    return {"contents": ["data:image/png;base64," + base64.b64encode(png).decode()],
            "names": ["p.png"]}  # fmt: skip


def surfaces(client: DashClient, base: str, run: str, png: bytes) -> dict[str, tuple]:
    """(method, url, body, headers) of every request that reads ``run``."""
    dash = {
        "listing": ("shell-runs-known.data", {"shell-location.search": f"?run={run}",
                    "shell-runs-interval.n_intervals": 0}, ["shell-location.search"]),
        "training poll": ("training-state.data", {"shell-runs.value": [run],
                          "training-interval.n_intervals": 1}, ["shell-runs.value"]),
        "mistakes": ("training-mistakes.children", {"shell-runs.value": [run],
                     "training-mistakes-interval.n_intervals": 1}, ["shell-runs.value"]),
        "classify epochs": ("classify-epoch.options", {"classify-run.value": run},
                            ["classify-run.value"]),
        "classify": ("classify-results.children", {"classify-uploads.data": _upload(png),
                     "classify-epoch.value": 1, "classify-run.value": run},
                     ["classify-uploads.data"]),
        "matrix": ("confusion-graph.figure", {"confusion-run.value": run,
                   "confusion-epoch.value": 1, "confusion-mode.value": "top5",
                   "confusion-order.value": "wordnet", "confusion-scale.value": "linear",
                   "confusion-viewport.data": {"w": 1400, "h": 1000}}, ["confusion-run.value"]),
        "pairs": ("confusion-pairs.data", {"confusion-run.value": run, "confusion-epoch.value": 1,
                  "confusion-mode.value": "top5"}, ["confusion-run.value"]),
        "drill": ("confusion-drill.children", {
            "confusion-pairs.active_cell": {"row": 0, "column": 0},
            "confusion-pairs.derived_viewport_data": [{"true_index": 0, "pred_index": 1}],
            "confusion-view.data": {"epoch": 1}, "confusion-run.value": run,
            "confusion-mode.value": "top5", "confusion-order.value": "index"},
            ["confusion-pairs.active_cell"]),
        "relatedness": ("confusion-relatedness.figure", {"confusion-run.value": run},
                        ["confusion-run.value"]),
        "labels cards": ("labels-issues.children", {"labels-run.value": run,
                         "labels-epoch.value": 1, "labels-method.value": "self_confidence"},
                         ["labels-run.value"]),
        "labels reliability": ("labels-reliability.figure", {"labels-run.value": run,
                               "labels-epoch.value": 1, "labels-group.value": "all"},
                               ["labels-run.value"]),
        "map epochs": ("map-epoch.max", {"map-run.value": run, "map-refresh.n_intervals": 1},
                       ["map-run.value"]),
        "map": ("map-graph.figure", {"map-run.value": run, "map-epoch.value": 2,
                "map-colour.value": "band"}, ["map-run.value"]),
        "map hover": ("map-tooltip.show", {"map-graph.hoverData": MAP_EVENT,
                      "map-view.data": MAP_VIEW, "map-run.value": run}, ["map-graph.hoverData"]),
        "map drill": ("map-drill.children", {"map-graph.clickData": MAP_EVENT,
                      "map-view.data": MAP_VIEW, "map-run.value": run}, ["map-graph.clickData"]),
        "map legend": ("map-legend.children", {"map-run.value": run, "map-colour.value": "band"},
                       ["map-run.value"]),
    }  # fmt: skip
    out: dict[str, tuple] = {
        page: ("GET", f"{base}{page}?run={run}", None, {}) for page in ("/", "/confusion", "/map")
    }
    headers = {"Content-Type": "application/json"}
    for what, (output, values, changed) in dash.items():
        out[what] = ("POST", base + "/_dash-update-component",
                     client.body(output, values, changed), headers)  # fmt: skip
    body, ctype = multipart({"run": run, "epoch": "1"}, "p.png", png)
    out["api classify"] = ("POST", base + "/api/v1/classify", body, {"Content-Type": ctype})
    out["api similar"] = ("POST", base + "/api/v1/similar", body, {"Content-Type": ctype})
    for route in ("label-issues", "calibration"):
        out[f"api {route}"] = ("GET", f"{base}/api/v1/{route}?run={run}&epoch=1", None, {})
    return out


#: the map page's state after drawing epoch 2 (what the hover and click callbacks are sent)
MAP_VIEW = {"context": ["x"], "epoch": 2, "x": [-1, 1], "y": [-1, 1],
            "grid": {"x0": -1, "y0": -1, "dx": 0.1, "dy": 0.1, "nx": 20, "ny": 20}}  # fmt: skip
MAP_EVENT = {"points": [{"x": 0.0, "y": 0.0}]}


def _send(request: tuple, timeout: float) -> Reply:
    method, url, body, headers = request
    try:
        return http(url, body, headers, method, timeout=timeout)
    except OSError as e:  # a timeout: the request holds a worker thread
        return Reply(-1, str(e).encode(), {}, timeout)


class RssPeak(threading.Thread):
    """The largest RSS of the server's workers while it runs, sampled every 50 ms."""

    def __init__(self, base: str, kill_at_mib: float = 4 * RSS_LIMIT_MIB) -> None:
        super().__init__(daemon=True)
        self.pids = gunicorn_pids(base)[1]
        self.peak = 0.0
        self.kill_at = kill_at_mib
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid in self.pids:
                with contextlib.suppress(OSError, AssertionError):
                    self.peak = max(self.peak, rss_mib(pid))
                    if self.peak > self.kill_at:  # long past failing: spare the machine
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    _bomb(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def _report(tmp_path_factory):
    yield
    if FIGURES:
        out = tmp_path_factory.getbasetemp() / "damage-figures.json"
        out.write_text(json.dumps(FIGURES, indent=1))
        print(f"\nplanted damage figures ({out}):", json.dumps(FIGURES, indent=1))


@pytest.fixture(scope="module")
def site(tmp_path_factory, bomb):
    """A good run (with its own thumbnails/) served by one gunicorn, no --data-root, for the
    whole module: each damage joins the ones planted before it (the server and the good run
    must come through all of them, one after another, not only each on a fresh server)."""
    tmp_path = tmp_path_factory.mktemp("planted")
    runs = tmp_path / "runs"
    good = make_fake_run(runs, "good", epochs_done=2)
    map_layouts(good)
    # the good run's own thumbnails/ folder: the drill-down shows pictures from inside the run
    for i in range(20):
        (good / "thumbnails" / "val").mkdir(parents=True, exist_ok=True)
        (good / "thumbnails" / "val" / f"{i}.png").write_bytes(_png((20, 200, 20)))
    secret = tmp_path / "outside" / "secret.png"  # a picture no allowed root holds
    secret.parent.mkdir()
    secret.write_bytes(_png((200, 10, 10)))
    with gunicorn(runs, workers=1, threads=4, env={"EPOCHSCOPE_DATA_ROOTS": ""}) as base:
        yield {"base": base, "runs": runs, "client": DashClient(base), "secret": secret,
               "bomb": bomb, "png": _png((120, 120, 120), 8)}  # fmt: skip


@pytest.mark.slow  # a real server or a large decode: seconds
def test_the_good_runs_drill_down_shows_its_own_thumbnails(site) -> None:
    """The control: the drill-down does serve pictures from inside a run (so the check that
    the damaged runs get none can fail)."""
    req = surfaces(site["client"], site["base"], "good", site["png"])["drill"]
    reply = _send(req, DAMAGED_TIMEOUT_S)
    assert reply.status == 200, reply.body[:300]
    assert b'"src":"data:image' in reply.body  # Dash writes / as \\u002f


@pytest.mark.slow
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_planted_damage_leaves_the_good_run_answering(site, kind: str) -> None:
    base, client = site["base"], site["client"]
    good = surfaces(client, base, "good", site["png"])
    good_calls = ["/", "/confusion", "listing", "training poll", "matrix", "pairs", "drill",
                  "map", "map drill"]  # fmt: skip
    # the good run is in use before the damage arrives (its first answers warm the server)
    warm = [(what, _send(good[what], 30.0)) for what in good_calls]
    assert all(r.status == 200 for _, r in warm), [(w, r.status) for w, r in warm]
    name = plant(kind, site["runs"], site["secret"], site["bomb"])
    damaged = surfaces(client, base, name, site["png"])
    sampler = RssPeak(base)
    sampler.start()
    try:
        with ThreadPoolExecutor(len(damaged)) as pool:
            # more damaged requests at once than the worker has threads
            pending = {w: pool.submit(_send, r, DAMAGED_TIMEOUT_S) for w, r in damaged.items()}
            time.sleep(0.5)
            good_replies: list[tuple[str, Reply]] = []
            for _ in range(2):  # while the damaged requests run, and again after a moment
                good_replies += [(what, _send(good[what], 10.0)) for what in good_calls]
            bad = {w: f.result() for w, f in pending.items()}
    finally:
        sampler.done.set()
        sampler.join()
    slow = [(w, r.status, round(r.seconds, 2)) for w, r in good_replies
            if r.status != 200 or r.seconds >= stretched(GOOD_WITHIN_S)]  # fmt: skip
    hung = [w for w, r in bad.items() if r.status == -1]
    errors = {w: (r.status, r.body[:200]) for w, r in bad.items() if r.status >= 500}
    FIGURES[kind] = {
        "worker_rss_peak_mib": round(sampler.peak, 1),
        "good_slowest_s": round(max(r.seconds for _, r in good_replies), 3),
        "good_slowest": max(good_replies, key=lambda wr: wr[1].seconds)[0],
        "good_slowest_before_s": round(max(r.seconds for _, r in warm), 3),
        "damaged_slowest_s": round(max(r.seconds for r in bad.values()), 3),
        "good_over_2s": len(slow),
        "damaged_hung": len(hung),
        "damaged_5xx": len(errors),
    }
    print(kind, FIGURES[kind])
    assert not slow, f"the good run's answers beside {name}: {slow}"
    assert not hung, f"requests for {name} hold worker threads: {hung}"
    assert not errors, errors
    assert sampler.peak < RSS_LIMIT_MIB, f"worker RSS {sampler.peak:.0f} MiB"
    # nothing outside the allowed roots (none here but the runs themselves) is served
    assert b"data:image" not in bad["drill"].body, "the drill-down served a picture"
    if kind == "preprocess-8192":
        text = bad["api classify"].body.decode(errors="replace")
        assert 400 <= bad["api classify"].status < 500 and "1024 px" in text, text[:300]
