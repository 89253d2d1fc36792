"""Any run directory, however damaged, affects only itself.

Hypothesis draws damage over every file of a run directory (run.json, metrics.jsonl, the TSVs,
predictions npz, ONNX models, symlinks, odd files such as FIFOs and /dev/zero, permissions) and
applies each to a copy of a good run, in one RUNS folder beside an undamaged run. After each,
a real gunicorn answers the pages, the callbacks of every page and the API for that run and
for the good one: never a 500, and the good run is always listed and drawn. The embeddings file
and the run's cached map layout (in the cache folder beside RUNS, outside the run) are damaged
too: the map of the damaged run says why there is none, the good run's map is still drawn.

``make test`` runs 60 damaged runs (``EPOCHSCOPE_DAMAGE_RUNS``); ``make test-faults`` 520, in four
shards its workers share.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.synthetic_embeddings import write_embeddings
from epochscope import maps, reader
from epochscope.predictions import LABEL_ARRAYS
from tests.support import (
    DashClient,
    classify,
    gunicorn,
    http,
    make_fake_run,
    multipart,
    tiny_onnx_model,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
FILES = ["run.json", "metrics.jsonl", "classes.tsv", "val_index.tsv",
         "predictions/epoch-0001.npz", "models/epoch-0001.onnx",
         "embeddings/epoch-0001.npz"]  # fmt: skip
MAP_CACHE = "map-cache"  # the run's cached layout of epoch 1, outside the run directory


def _npz(**arrays) -> bytes:
    buf = BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_claiming(rows: int, names: tuple[str, ...] = ("top5", "prob"), cols: int = 5) -> bytes:
    """An npz whose arrays' headers claim ``rows`` x ``cols`` int64 but hold a few bytes."""
    header = f"{{'descr': '<i8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
    header += " " * (63 - len(header) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 80
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in names:
            z.writestr(f"{name}.npy", npy)
    return buf.getvalue()


@st.composite
def run_json_damage(draw) -> tuple[str, object]:
    info = {"schema": 1, "name": "x", "engine": "pytorch", "arch": "tiny", "epochs": 5,
            "data": {"root": "/nowhere", "num_classes": 10},
            "preprocess": {"image_size": 8, "resize_size": 10, "interpolation": "bilinear",
                           "mean": [0.5] * 3, "std": [0.2] * 3}, "started": 1.7e9}  # fmt: skip
    kind = draw(st.sampled_from(["field", "nested", "number", "value", "bytes", "inf"]))
    if kind == "field":
        key = draw(st.sampled_from([*info, "preprocess.image_size", "preprocess.mean",
                                    "data.root", "data.num_classes"]))  # fmt: skip
        value = draw(JSON | st.just("x") | st.integers(10**300, 10**400))
        if "." in key:
            outer, inner = key.split(".")
            info[outer] = {**info[outer], inner: value}
        else:
            info[key] = value
        return "text", json.dumps(info)
    if kind == "nested":
        depth = draw(st.integers(500, 200_000))
        return "text", '{"schema": 1, "data": ' + "[" * depth + "]" * depth + "}"
    if kind == "number":
        return "text", json.dumps(info).replace("1700000000.0", "9" * draw(st.integers(300, 5000)))
    if kind == "inf":
        return "text", json.dumps(info).replace("1700000000.0", draw(st.sampled_from(
            ["1e400", "-1e400", "NaN", "Infinity"])))  # fmt: skip
    if kind == "value":
        return "text", json.dumps(draw(JSON))
    return "bytes", draw(st.binary(max_size=300))


@st.composite
def metrics_damage(draw) -> tuple[str, object]:
    good = {"kind": "epoch", "time": 1.7e9, "epoch": 1, "val_top5": 0.5, "val_top1": 0.2,
            "train_loss": 1.0, "lr": 0.1}  # fmt: skip
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["field", "json", "bytes", "nested", "huge", "bigint"]))
        if kind == "field":
            event = dict(good)
            event[draw(st.sampled_from([*good, "state", "error", "step", "epoch_step",
                                        "steps_per_epoch"]))] = draw(JSON)  # fmt: skip
            event["kind"] = draw(st.sampled_from(["epoch", "status", "step", "device", "zzz"]))
            lines.append(json.dumps(event))
        elif kind == "json":
            lines.append(json.dumps(draw(JSON)))
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=80)).replace(b"\n", b" ").decode("latin-1"))
        elif kind == "nested":
            d = draw(st.integers(500, 100_000))
            lines.append('{"kind": "epoch", "epoch": ' + "[" * d + "]" * d + "}")
        elif kind == "huge":
            lines.append(json.dumps({**good, "error": "e" * draw(st.integers(10**5, 3 * 10**6))}))
        else:
            lines.append(json.dumps(good).replace('"epoch": 1', '"epoch": 1' + "0" * 400))
    tail = "" if draw(st.booleans()) else '{"kind": "ep'  # a torn last line
    return "text", "\n".join(lines) + "\n" + tail


@st.composite
def tsv_damage(draw) -> tuple[str, object]:
    kind = draw(st.sampled_from(["field", "nul", "header", "columns", "label", "bytes"]))
    rows = [f"{i}\t{i % 10}\tval/{i}.png" for i in range(20)]
    header = "row\tlabel\tpath"
    if kind == "field":
        rows[draw(st.integers(0, 19))] = "3\t3\t" + "p" * draw(st.integers(130_000, 400_000))
    elif kind == "nul":
        rows[0] = "0\t0\tval/\0.png"
    elif kind == "header":
        header = draw(st.text(max_size=30))
    elif kind == "columns":
        rows[5] = "5\t5\tx\ty\tz"
    elif kind == "label":
        rows[2] = "2\t" + draw(st.sampled_from(["-5", "99999", "1" * 400, "x", "1e3", ""])) + "\tp"
    else:
        return "bytes", draw(st.binary(max_size=400))
    return "text", header + "\n" + "\n".join(rows) + "\n"


@st.composite
def npz_damage(draw) -> tuple[str, object]:
    kind = draw(st.sampled_from(["bytes", "shape", "dtype", "range", "object", "claim", "nan",
                                 "labels"]))  # fmt: skip
    n = 20
    top5 = np.tile(np.arange(5, dtype=np.int16), (n, 1))
    prob = np.full((n, 5), 0.2, np.float16)
    if kind == "bytes":
        return "bytes", draw(st.binary(max_size=400))
    if kind == "shape":
        return "bytes", _npz(top5=top5[: draw(st.integers(0, 30))], prob=prob[:3])
    if kind == "dtype":
        return "bytes", _npz(top5=top5.astype(np.float32), prob=prob.astype(np.complex64))
    if kind == "range":
        return "bytes", _npz(top5=top5 * draw(st.integers(-30000, 30000)), prob=prob)
    if kind == "object":
        return "bytes", _npz(top5=np.array([{"a": 1}] * 5, dtype=object), prob=prob)
    if kind == "claim":
        return "bytes", _npy_claiming(draw(st.integers(10**6, 10**8)))
    if kind == "labels":
        return "bytes", label_npz(draw(st.sampled_from(LABEL_DAMAGES)), n)
    return "bytes", _npz(top5=top5, prob=np.full((n, 5), np.nan, np.float32))


LABEL_DAMAGES = ["partial", "short", "temperature", "zero-temperature", "nan", "object", "2d"]


def label_npz(what: str, n: int = 20) -> bytes:
    """A predictions file whose top-5 is sound but whose label arrays (issue 23) are not."""
    arrays: dict = {name: np.full(n, 0.5, np.float32) for name in LABEL_ARRAYS}
    arrays["temperature"] = np.float32(1.0)
    if what == "partial":
        del arrays["entropy"]
    elif what == "short":
        arrays["p_label"] = arrays["p_label"][:7]
    elif what == "temperature":
        arrays["temperature"] = np.float32(-1.0)
    elif what == "zero-temperature":
        arrays["temperature"] = np.zeros(3, np.float32)
    elif what == "nan":
        arrays["confidence"][:] = np.nan
        arrays["p_label"][::2] = np.inf
    elif what == "object":
        arrays["margin"] = np.array([{"a": 1}] * n, dtype=object)
    elif what == "2d":
        arrays["confidence_scaled"] = np.zeros((n, 2), np.float32)
    top5 = np.tile(np.arange(5, dtype=np.int16), (n, 1))
    return _npz(top5=top5, prob=np.full((n, 5), 0.2, np.float16), **arrays)


@st.composite
def embeddings_damage(draw) -> tuple[str, object]:
    """An epoch's embeddings file (vectors float16 [20, D], the projection's mean and
    components) that is not what it says."""
    kind = draw(st.sampled_from(["bytes", "rows", "dims", "dtype", "nan", "object", "claim",
                                 "projection", "partial"]))  # fmt: skip
    n, d, f = 20, 8, 16
    arrays = {"vectors": np.ones((n, d), np.float16), "mean": np.zeros(f, np.float32),
              "components": np.eye(d, f, dtype=np.float32)}  # fmt: skip
    if kind == "bytes":
        return "bytes", draw(st.binary(max_size=400))
    if kind == "rows":
        arrays["vectors"] = arrays["vectors"][: draw(st.sampled_from([0, 1, 19, 21, 400]))]
        if len(arrays["vectors"]) > n:
            arrays["vectors"] = np.ones((len(arrays["vectors"]), d), np.float16)
    elif kind == "dims":
        width = draw(st.sampled_from([0, 129, 5000]))
        arrays["vectors"] = np.ones((n, width), np.float16)
        arrays["components"] = np.ones((width, f), np.float32)
    elif kind == "dtype":
        arrays["vectors"] = arrays["vectors"].astype(draw(st.sampled_from(
            [np.complex64, np.int64, np.bool_, "U3"])))  # fmt: skip
    elif kind == "nan":
        arrays["vectors"][::3] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "object":
        arrays[draw(st.sampled_from(list(arrays)))] = np.array([{"a": 1}] * n, dtype=object)
    elif kind == "claim":
        return "bytes", _npy_claiming(draw(st.integers(10**6, 10**9)),
                                      ("vectors", "mean", "components"), 128)  # fmt: skip
    elif kind == "projection":
        arrays["components"] = np.ones((draw(st.integers(0, 12)), 3), np.float32)
    else:
        del arrays[draw(st.sampled_from(list(arrays)))]
    return "bytes", _npz(**arrays)


@st.composite
def cache_damage(draw) -> tuple[str, object]:
    """The run's cached layout: torn, foreign, the wrong shape, or not a plain file."""
    kind = draw(st.sampled_from(["bytes", "shape", "dtype", "nan", "object", "huge",
                                 "fifo", "zero", "dir", "loop", "empty", "chmod"]))  # fmt: skip
    buf = BytesIO()
    if kind == "bytes":
        return "bytes", draw(st.binary(max_size=300))
    if kind == "shape":
        np.save(buf, np.zeros((draw(st.sampled_from([0, 19, 21, 5000])), 2), np.float32))
    elif kind == "dtype":
        np.save(buf, np.zeros((20, 2), draw(st.sampled_from([np.float64, np.int32, np.float16]))))
    elif kind == "nan":
        np.save(buf, np.full((20, 2), draw(st.sampled_from([np.nan, np.inf])), np.float32))
    elif kind == "object":
        np.save(buf, np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    elif kind == "huge":
        return "huge", None
    else:
        return kind, None
    return "bytes", buf.getvalue()


@st.composite
def file_damage(draw) -> tuple[str, object]:
    """Something other than a plain file where one is expected (or its content cut short)."""
    return draw(st.sampled_from(["fifo", "dir", "zero", "loop", "dangling", "slash", "empty",
                                 "truncate", "chmod"])), None  # fmt: skip


@st.composite
def damage(draw) -> tuple[str, tuple[str, object]]:
    target = draw(st.sampled_from([*FILES, "folder", MAP_CACHE]))
    if target == MAP_CACHE:
        return target, draw(cache_damage())
    if target == "folder":
        return target, (draw(st.sampled_from(["loop", "chmod", "slash", "fifo", "models-file"])),
                        None)  # fmt: skip
    by_file = {
        "run.json": run_json_damage(),
        "metrics.jsonl": metrics_damage(),
        "classes.tsv": tsv_damage(),
        "val_index.tsv": tsv_damage(),
        "predictions/epoch-0001.npz": npz_damage(),
        "models/epoch-0001.onnx": st.tuples(st.just("bytes"), st.binary(max_size=300)),
        "embeddings/epoch-0001.npz": embeddings_damage(),
    }
    return target, draw(by_file[target] | file_damage())


def apply(run: Path, target: str, how: tuple[str, object]) -> None:
    kind, value = how
    if target == "folder":
        if kind == "loop":
            shutil.rmtree(run)
            run.symlink_to(run.name)
        elif kind == "chmod":
            run.chmod(0)
        elif kind == "slash":
            shutil.rmtree(run / "predictions")
            (run / "predictions").symlink_to("/")
        elif kind == "fifo":
            shutil.rmtree(run / "models")
            os.mkfifo(run / "models")
        else:
            shutil.rmtree(run / "models")
            (run / "models").write_text("not a folder")
        return
    path = maps.layout_path(run, 1) if target == MAP_CACHE else run / target
    if kind == "huge":  # a sparse 3 GB file: never read whole
        with path.open("r+b") as f:
            f.truncate(3 << 30)
        return
    if kind == "text":
        path.write_text(value, encoding="utf-8", errors="surrogateescape")
    elif kind == "bytes":
        path.write_bytes(value)
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "chmod":
        path.chmod(0)
    else:
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "loop":
            path.symlink_to(path.name)
        elif kind == "dangling":
            path.symlink_to("/nonexistent/file")
        elif kind == "slash":
            path.symlink_to("/")


@pytest.fixture(scope="module")
def site(tmp_path_factory, request) -> dict:
    root = tmp_path_factory.mktemp("damage")
    runs = root / "runs"
    _put_layouts(make_fake_run(runs, "good", epochs_done=2))
    template = make_fake_run(root / "template", "t", epochs_done=1)
    tiny_onnx_model(template / "models" / "epoch-0002.onnx", 3, seed=9)  # wrong class count
    write_embeddings(template, dims=8)
    server = gunicorn(runs, workers=1, env={"EPOCHSCOPE_DATA_ROOTS": "/"})
    base = server.__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    return {"base": base, "runs": runs, "template": template, "client": DashClient(base),
            "n": 0, "log": runs.parent}  # fmt: skip


def _put_layouts(run: Path) -> None:
    """Embeddings (when it has none) and each epoch's map layout in the cache beside RUNS,
    where the computing worker leaves them (computing one is tested elsewhere)."""
    if not reader.embedding_epochs(run):
        write_embeddings(run, dims=8)
    for epoch in reader.embedding_epochs(run):
        path = maps.layout_path(run, epoch)  # the server's cache: the same env, beside RUNS
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.random.default_rng(epoch).uniform(-1, 1, (20, 2)).astype(np.float32))


#: what the map page holds after drawing an epoch: the hover and click callbacks' state
MAP_VIEW = {"context": ["x"], "epoch": 1, "x": [-1, 1], "y": [-1, 1],
            "grid": {"x0": -1, "y0": -1, "dx": 0.1, "dy": 0.1, "nx": 20, "ny": 20}}  # fmt: skip
MAP_EVENT = {"points": [{"x": 0.0, "y": 0.0}]}


def map_calls(client: DashClient, name: str) -> dict[str, int]:
    """The /map page's callbacks for ``name``: their statuses."""
    calls = {
        "map runs": ("map-run.options", {"shell-runs.value": [name], "map-wanted.data":
                     {"run": name}}, ["map-wanted.data"]),
        "map epochs": ("map-epoch.max", {"map-run.value": name, "map-refresh.n_intervals": 1},
                       ["map-run.value"]),
        "map": ("map-graph.figure", {"map-run.value": name, "map-epoch.value": 1,
                "map-colour.value": "band"}, ["map-run.value"]),
        "map hover": ("map-tooltip.show", {"map-graph.hoverData": MAP_EVENT,
                      "map-view.data": MAP_VIEW, "map-run.value": name}, ["map-graph.hoverData"]),
        "map drill": ("map-drill.children", {"map-graph.clickData": MAP_EVENT,
                      "map-view.data": MAP_VIEW, "map-run.value": name}, ["map-graph.clickData"]),
        "map legend": ("map-legend.children", {"map-run.value": name, "map-colour.value": "class"},
                       ["map-run.value"]),
    }  # fmt: skip
    return {what: client.call(*call).status for what, call in calls.items()}


def good_map_drawn(client: DashClient) -> bool:
    reply = client.call("map-graph.figure", {"map-run.value": "good", "map-epoch.value": 2,
                        "map-colour.value": "band"}, ["map-run.value"])  # fmt: skip
    return reply.status == 200 and bool(reply.json()["response"]["map-view"]["data"]["grid"])


def check(site: dict, name: str) -> None:
    """Every surface for the damaged run ``name`` and the good run: no 500, good listed."""
    base, client = site["base"], site["client"]
    for page in ("/", "/classify", "/confusion", "/map"):
        assert http(f"{base}{page}?run={name}&run=good").status == 200, page
    listing = client.call(
        "shell-runs-known.data",
        {"shell-location.search": f"?run={name}", "shell-runs-interval.n_intervals": 0},
        ["shell-location.search"],
    )
    assert listing.status == 200, listing.body[:300]
    options = listing.json()["response"]["shell-runs"]["options"]
    assert "good" in [o["value"] for o in options], "the good run is not listed"
    poll = client.call("training-state.data", {"shell-runs.value": ["good", name],
                       "training-interval.n_intervals": 1}, ["shell-runs.value"])  # fmt: skip
    assert poll.status == 200, poll.body[:300]
    body = poll.json()["response"]
    assert "good" in body["training-state"]["data"]["runs"], "the good run is not drawn"
    statuses = {
        "mistakes": client.call("training-mistakes.children", {"shell-runs.value": [name, "good"],
                                "training-mistakes-interval.n_intervals": 1},
                                ["shell-runs.value"]).status,
        "classify runs": client.call("classify-run.options", {"shell-runs.value": [name]},
                                     ["shell-runs.value"]).status,
        "classify epochs": client.call("classify-epoch.options", {"classify-run.value": name},
                                       ["classify-run.value"]).status,
        "confusion runs": client.call("confusion-run.options", {"shell-runs.value": [name]},
                                      ["shell-runs.value"]).status,
        "confusion epochs": client.call("confusion-epoch.max", {"confusion-run.value": name},
                                        ["confusion-run.value"]).status,
        "matrix": client.call("confusion-graph.figure", {
            "confusion-run.value": name, "confusion-epoch.value": 1, "confusion-mode.value": "top5",
            "confusion-order.value": "index", "confusion-scale.value": "linear",
            "confusion-viewport.data": {"w": 1400, "h": 1000}},
            ["confusion-run.value"]).status,
        "drill": client.call("confusion-drill.children", {
            "confusion-pairs.active_cell": {"row": 0, "column": 0},
            "confusion-pairs.derived_viewport_data": [{"true_index": 0, "pred_index": 1}],
            "confusion-view.data": {"epoch": 1}, "confusion-run.value": name,
            "confusion-mode.value": "top5", "confusion-order.value": "index"},
            ["confusion-pairs.active_cell"]).status,
        "pairs": client.call("confusion-pairs.data", {"confusion-run.value": name,
                             "confusion-epoch.value": 1, "confusion-mode.value": "top5"},
                             ["confusion-run.value"]).status,
        "relatedness": client.call("confusion-relatedness.figure", {"confusion-run.value": name},
                                   ["confusion-run.value"]).status,
        "labels cards": client.call("labels-issues.children", {
            "labels-run.value": name, "labels-epoch.value": 1,
            "labels-method.value": "self_confidence"}, ["labels-run.value"]).status,
        "labels reliability": client.call("labels-reliability.figure", {
            "labels-run.value": name, "labels-epoch.value": 1, "labels-group.value": "all"},
            ["labels-run.value"]).status,
        "label-issues api": http(f"{base}/api/v1/label-issues?run={name}&epoch=1").status,
        "calibration api": http(f"{base}/api/v1/calibration?run={name}").status,
        "api": classify(base, PHOTO, "p.png", run=name).status,
        "similar api": http(f"{base}/api/v1/similar",
                            *_similar_body(name)).status,
        **map_calls(client, name),
        "api epoch 2": classify(base, PHOTO, "p.png", run=name, epoch=2).status,
    }  # fmt: skip
    bad = {k: v for k, v in statuses.items() if v >= 500}
    assert not bad, bad
    assert good_map_drawn(client), "the good run's map is not drawn"


def _similar_body(name: str) -> tuple[bytes, dict[str, str]]:
    body, ctype = multipart({"run": name, "epoch": "1"}, "p.png", PHOTO)
    return body, {"Content-Type": ctype}


PHOTO = _npz()  # replaced below by a real PNG once PIL is imported
try:
    from PIL import Image

    _buf = BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(_buf, "PNG")
    PHOTO = _buf.getvalue()
except ImportError:  # pragma: no cover
    pass


def _damaged_runs(site: dict, target: str, how: tuple[str, object]) -> None:
    site["n"] += 1
    name = f"d{site['n']:04d}"
    run = site["runs"] / name
    shutil.copytree(site["template"], run, symlinks=True)
    _put_layouts(run)  # the copy's embeddings file is a new one: its layout, as if computed
    apply(run, target, how)
    try:
        check(site, name)
    except AssertionError as e:
        raise AssertionError(f"{name}: {target} {how[0]} {str(how[1])[:200]!r}: {e}") from None


@pytest.mark.parametrize("what", LABEL_DAMAGES)
def test_damaged_label_arrays_affect_only_themselves(site, what: str) -> None:
    """Each way the label arrays can be wrong: the labels page and its API answer 4xx or say
    what is wrong, never 500, and the good run still answers."""
    _damaged_runs(site, "predictions/epoch-0001.npz", ("bytes", label_npz(what)))


MAP_DAMAGES = {
    "embeddings garbage": ("embeddings/epoch-0001.npz", ("bytes", b"PK\x03\x04 not a zip")),
    "embeddings claim 1e9 rows": ("embeddings/epoch-0001.npz", ("bytes", _npy_claiming(
        10**9, ("vectors", "mean", "components"), 128))),
    "embeddings pickled": ("embeddings/epoch-0001.npz", ("bytes", _npz(
        vectors=np.array([{"a": 1}] * 20, dtype=object)))),
    "embeddings /dev/zero": ("embeddings/epoch-0001.npz", ("zero", None)),
    "cache garbage": (MAP_CACHE, ("bytes", b"\x93NUMPY garbage")),
    "cache wrong shape": (MAP_CACHE, ("bytes", _npy(np.zeros((3, 2), np.float32)))),
    "cache pickled": (MAP_CACHE, ("bytes", _npy(np.array([{"a": 1}] * 20, dtype=object)))),
    "cache 3 GB": (MAP_CACHE, ("huge", None)),
    "cache fifo": (MAP_CACHE, ("fifo", None)),
    "cache /dev/zero": (MAP_CACHE, ("zero", None)),
}  # fmt: skip


@pytest.mark.parametrize("what", MAP_DAMAGES)
def test_damaged_map_files_affect_only_themselves(site, what: str) -> None:
    """A damaged or hostile embeddings file in the run, a damaged layout in the cache folder:
    the map and similar images of that run answer without a 500, the good run's map is drawn."""
    _damaged_runs(site, *MAP_DAMAGES[what])


RUNS_QUICK = int(os.environ.get("EPOCHSCOPE_DAMAGE_RUNS", "60"))


@pytest.mark.slow
@settings(max_examples=RUNS_QUICK, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(damage())
def test_damaged_runs_affect_only_themselves(site, spec) -> None:
    _damaged_runs(site, *spec)


FAULT_RUNS, FAULT_SHARDS = 520, 4  # shards: make test-faults spreads them over its workers


@pytest.mark.faults
@pytest.mark.timeout(900)  # 130 runs x ~1.3 s of checks (the map's and similar's included)
@pytest.mark.parametrize("shard", range(FAULT_SHARDS))
@settings(max_examples=FAULT_RUNS // FAULT_SHARDS, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(damage())
def test_five_hundred_damaged_runs_beside_a_good_one(site, shard: int, spec) -> None:
    _damaged_runs(site, *spec)


def test_the_listing_after_all_that_damage(site) -> None:
    """Whatever came before in this module: the good run is listed, the log has no 500."""
    client = site["client"]
    reply = client.call(
        "shell-runs-known.data",
        {"shell-location.search": "?run=good", "shell-runs-interval.n_intervals": 0},
        ["shell-location.search"],
    )
    assert reply.status == 200
    assert "good" in [o["value"] for o in reply.json()["response"]["shell-runs"]["options"]]
    logs = "".join(p.read_text(errors="replace") for p in site["log"].glob("gunicorn-*.log"))
    assert "Exception on /" not in logs, logs[-3000:]
