"""Readers under writers: the dashboard polls a run whose files are appended, truncated,
replaced, deleted and filled with garbage, and never answers 500 or a broken figure.

Fast (part of make test): a real gunicorn for a few seconds under a chaos thread, garbage and
unknown event kinds (ignored with a logged warning), and a property-based fuzz of the training
page's pure poll over arbitrary event lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dashboard.confusion import data as confusion_data
from dashboard.confusion import service
from dashboard.training import live
from epochscope import Runs
from epochscope.reader import MetricsLog, list_runs, load_predictions
from tests.support import DashClient, figure_ok, make_fake_run

CHAOS_SECONDS = 8.0


# --- garbage in a run directory ----------------------------------------------------------------
def test_garbage_lines_and_unknown_kinds_are_ignored_with_a_warning(tmp_path, caplog) -> None:
    run = make_fake_run(tmp_path, "junk", epochs_done=2)
    with (run / "metrics.jsonl").open("ab") as f:
        f.write(b"not json at all\n\xff\xfe\n[1, 2]\n")
        f.write(b'{"kind": "telemetry", "time": 1, "epoch": 1}\n')
        f.write(b'{"kind": "epoch", "time": 1, "epoch": "three", "val_top5": "x"}\n')
    caplog.set_level(logging.WARNING, logger="epochscope.reader")
    log = MetricsLog(run / "metrics.jsonl")
    log.refresh()
    assert log.garbage_lines == 3
    assert "telemetry" in caplog.text and "not JSON" in caplog.text
    update = live.poll(Runs(tmp_path), ["junk"], None)
    assert update.full and all(fig is not None for fig in update.panels.values())
    for fig in update.panels.values():
        fig.to_json()  # serialisable: the browser gets a drawable figure


def test_garbage_prediction_files_are_refused_with_a_warning(tmp_path, caplog) -> None:
    run = make_fake_run(tmp_path, "junk", epochs_done=3)
    caplog.set_level(logging.WARNING, logger="epochscope.reader")
    (run / "predictions" / "epoch-0001.npz").write_bytes(b"PK\x03\x04 garbage")
    npz = (run / "predictions" / "epoch-0002.npz").read_bytes()
    (run / "predictions" / "epoch-0002.npz").write_bytes(npz[: len(npz) // 2])
    with (run / "predictions" / "epoch-0003.npz").open("wb") as f:
        np.savez(f, top5=np.array([object()] * 5).reshape(1, 5), prob=np.zeros((1, 5)))
    for epoch in (1, 2, 3):
        with pytest.raises(ValueError):
            load_predictions(run, epoch)
    assert caplog.text.count("does not load") == 3
    (run / "predictions" / "epoch-0009.npz").mkdir()  # a folder with a file's name
    (run / "predictions" / "notes.txt").write_text("hello")
    assert [s.name for s in list_runs(tmp_path)] == ["junk"]


# --- the pure poll over arbitrary events --------------------------------------------------------
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
    st.text(max_size=5),
)  # fmt: skip
_KEYS = (
    "epoch", "time", "val_top5", "val_top1", "train_loss", "loss", "lr", "epoch_step",
    "steps_per_epoch", "state", "img_per_s", "mem_used_mib", "index", "epoch_seconds", "error",
)  # fmt: skip
_event = st.fixed_dictionaries(
    {"kind": st.sampled_from(["epoch", "step", "status", "device", "warning", "zzz", 3])},
    optional={k: _scalar for k in _KEYS},
)


@pytest.mark.slow  # 60 examples, each a real poll: ~20 s
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(_event, st.binary(max_size=20)), max_size=25), st.integers(0, 30))
@example(lines=[{"kind": "epoch", "epoch": True}], cut=30)  # a bool epoch seen by the 2nd poll
def test_poll_survives_any_event_lines(tmp_path: Path, lines: list, cut: int) -> None:
    run = tmp_path / "fuzz"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text('{"epochs": 5, "started": 0}')
    blob = b"".join(
        (json.dumps(x).encode() if isinstance(x, dict) else x.replace(b"\n", b" ")) + b"\n"
        for x in lines
    )
    provider = Runs(tmp_path)
    (run / "metrics.jsonl").write_bytes(blob[: len(blob) - cut] if cut < len(blob) else b"")
    first = live.poll(provider, ["fuzz"], None)
    (run / "metrics.jsonl").write_bytes(blob)  # grows (or is replaced): a second poll
    second = live.poll(provider, ["fuzz"], first.state)
    for update, data in ((first, blob[: len(blob) - cut] if cut < len(blob) else b""),
                         (second, blob)):  # fmt: skip
        for fig in update.panels.values():
            if fig is not None:
                json.dumps(fig.to_plotly_json(), default=str)
        # the poll has read exactly up to the last complete line that is an event, and its
        # last epoch is the largest valid one among those lines
        assert update.state["pos"]["fuzz"] == _last_event_end(data)
        assert update.state["top"]["fuzz"] == max(_epochs(data), default=0)


def _event_lines(data: bytes) -> list[tuple[int, dict]]:
    """(end byte, event) of each complete line that is a JSON object with a string kind."""
    out, pos = [], 0
    for line in data.split(b"\n")[:-1]:
        pos += len(line) + 1
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("kind"), str):
            out.append((pos, event))
    return out


def _last_event_end(data: bytes) -> int:
    return max((end for end, _ in _event_lines(data)), default=0)


def _epochs(data: bytes) -> list[int]:
    return [
        e["epoch"] for _, e in _event_lines(data)
        if e["kind"] == "epoch" and type(e.get("epoch")) is int and 1 <= e["epoch"] <= 10**6
    ]  # fmt: skip


# --- chaos under a real gunicorn ----------------------------------------------------------------
class Chaos(threading.Thread):
    """Appends, truncates, replaces and deletes the files of one run while readers poll."""

    def __init__(self, run: Path, seconds: float, seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.folder, self.seconds, self.rng = run, seconds, random.Random(seed)
        self.actions = 0
        self.originals = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def _one(self) -> None:
        path = self.rng.choice(sorted(self.originals))
        good = self.originals[path]
        action = self.rng.choice(["truncate", "garbage", "delete", "restore", "append", "swap"])
        if action == "truncate":
            path.write_bytes(good[: self.rng.randrange(len(good) + 1)])
        elif action == "garbage":
            path.write_bytes(self.rng.randbytes(self.rng.randrange(1, 300)))
        elif action == "delete":
            path.unlink(missing_ok=True)
        elif action == "append" and path.name == "metrics.jsonl":
            with path.open("ab") as f:
                f.write(b'{"kind": "mystery", "epoch": 1, "time": 2}\n{"kind": "ep')
        elif action == "swap":
            tmp = path.with_name("." + path.name + ".swap")
            tmp.write_bytes(good)
            tmp.replace(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(good)

    def run_chaos(self) -> None:
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            self._one()
            self.actions += 1
            time.sleep(0.01)
        for path, good in self.originals.items():  # leave it whole
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(good)

    def run(self) -> None:
        self.run_chaos()


OK_REPLIES: dict[str, int] = {}


def _check_reply(reply, what: str) -> None:
    OK_REPLIES[what] = OK_REPLIES.get(what, 0) + (reply.status == 200)
    assert reply.status in (200, 204), f"{what}: {reply.status} {reply.body[:300]!r}"
    if reply.status == 200:
        body = reply.json()
        for props in body.get("response", {}).values():
            for name, value in props.items():
                if name == "figure" and "__dash_patch_update" not in json.dumps(value)[:40]:
                    assert figure_ok(value), f"{what}: broken figure {str(value)[:200]}"


def poll_once(client: DashClient, state: dict | None, i: int, rng: random.Random) -> dict | None:
    reply = client.call(
        "training-state.data",
        {"training-interval.n_intervals": i, "shell-runs.value": ["chaos"],
         "training-state.data": state},
        ["training-interval.n_intervals"],
    )  # fmt: skip
    _check_reply(reply, "training poll")
    if reply.status == 200:
        state = reply.json()["response"]["training-state"]["data"]
    lo = rng.uniform(0, 8)
    zoom = client.call(
        "confusion-graph.figure",
        {"confusion-run.value": "chaos", "confusion-epoch.value": rng.randint(1, 4),
         "confusion-mode.value": "top5", "confusion-order.value": "index",
         "confusion-scale.value": "eq_hist", "confusion-viewport.data": {"w": 1400, "h": 1000},
         "confusion-graph.relayoutData": {"xaxis.range[0]": lo, "xaxis.range[1]": lo + 2,
                                          "yaxis.range[0]": lo, "yaxis.range[1]": lo + 2}},
        ["confusion-graph.relayoutData"],
    )  # fmt: skip
    _check_reply(zoom, "confusion zoom")
    runs = client.call(
        "shell-runs-known.data",
        {"shell-runs-interval.n_intervals": i, "shell-location.search": "?run=chaos"},
        ["shell-runs-interval.n_intervals"],
    )
    _check_reply(runs, "run list")
    return state


@pytest.mark.slow  # a real gunicorn polled while the run is rewritten: ~15 s
def test_dashboard_polling_a_run_under_chaos_never_fails(tmp_path, dashboard_server) -> None:
    runs = tmp_path / "runs"
    run = make_fake_run(runs, "chaos", epochs_done=4, state=None)
    base = dashboard_server(runs)
    client = DashClient(base)
    rng = random.Random(1)
    chaos = Chaos(run, CHAOS_SECONDS)
    chaos.start()
    state, polls = None, 0
    while chaos.is_alive():
        state = poll_once(client, state, polls, rng)
        polls += 1
    chaos.join()
    confusion_data.clear()
    state = poll_once(client, state, polls, rng)  # whole again: still answers
    assert polls >= 5 and chaos.actions > 100, (polls, chaos.actions)
    assert all(OK_REPLIES.get(w) for w in ("training poll", "confusion zoom")), OK_REPLIES
    log = (runs.parent / f"gunicorn-{base.rsplit(':', 1)[1]}.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    print(f"chaos: {chaos.actions} file actions, {polls} polls x 3 callbacks, no error; "
          f"replies with data: {OK_REPLIES}")  # fmt: skip


def test_service_errors_are_only_the_kinds_callbacks_absorb(tmp_path) -> None:
    """What the confusion callbacks call raises only what shell.tolerant turns into 'keep'."""
    run = make_fake_run(tmp_path, "svc", epochs_done=2)
    chaos = Chaos(run, 0.0, seed=3)
    rng = random.Random(2)
    for _ in range(150):
        chaos._one()
        confusion_data.clear()
        with contextlib.suppress(ValueError, LookupError, OSError):
            view_run = confusion_data.run(run)
            service.matrix_view(view_run, rng.randint(1, 2), "top5", "index", "eq_hist",
                                (0.0, 10.0), (0.0, 10.0))  # fmt: skip
    chaos.run_chaos()
