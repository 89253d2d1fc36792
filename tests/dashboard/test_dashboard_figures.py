"""Figure builders: pure functions from metrics events to Plotly figures and patches."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from dashboard.training import figures
from tests.support import epoch_event


def _events(n_epochs: int) -> list[dict]:
    events = [{"kind": "status", "time": 0.0, "epoch": 1, "state": "started"}]
    for e in range(1, n_epochs + 1):
        for k in (1, 2):
            step = {"kind": "step", "time": e * 10.0 + k, "epoch": e, "step": 2 * e + k}
            events.append({**step, "epoch_step": k, "steps_per_epoch": 2, "loss": 1 / e, "lr": 0.1})
        for i in (0, 1):
            events.append({"kind": "device", "time": e * 60.0, "epoch": e, "index": i,
                           "device_kind": "cuda", "name": "K80", "mem_used_mib": 1000.0 * (i + 1),
                           "mem_total_mib": 12000.0, "util_pct": 95.0})  # fmt: skip
        events.append(epoch_event(e, e * 10.0, 0.1 * e))
    return events


def _trace(fig: go.Figure, key: str):
    return next(t for t in fig.data if t.meta == key)


def test_accuracy_figure_has_train_val_top1_top5_and_the_best_epoch() -> None:
    events = _events(3)
    events.append({**epoch_event(2, 99.0, 0.95)})  # epoch 2 redone: the last one wins
    series = figures.run_series("a", 0, events, t0=0.0)
    fig = figures.build_figure("accuracy", series["accuracy"])
    for key in ("a/train_top1", "a/val_top1", "a/train_top5", "a/val_top5"):
        assert list(_trace(fig, key).x) == [1, 2, 3]
    assert _trace(fig, "a/val_top5").y[1] == pytest.approx(1.0)
    best = _trace(fig, "a/best")
    assert list(best.x) == [2] and "epoch 2" in best.text[0]
    assert _trace(fig, "a/train_top1").line.dash == "dash"
    assert _trace(fig, "a/val_top5").xaxis == "x2"  # top-5 on the right-hand subplot


def test_other_panels() -> None:
    series = figures.run_series("a", 1, _events(2), t0=0.0)
    loss = figures.build_figure("loss", series["loss"])
    assert list(_trace(loss, "a/val_loss").y) == pytest.approx([2.2, 1.1])
    steps = figures.build_figure("steps", series["steps"])
    assert list(_trace(steps, "a/step_loss").x) == [0.5, 1.0, 1.5, 2.0]  # fractional epochs
    lr = figures.build_figure("lr", series["lr"])
    assert {t.meta for t in lr.data} == {"a/lr_step", "a/lr_epoch"}
    thr = figures.build_figure("throughput", series["throughput"])
    assert list(_trace(thr, "a/img_per_s").y) == [2400.0, 2400.0]
    dev = figures.build_figure("devices", series["devices"])
    assert {t.meta for t in dev.data} == {"a/dev0/mem", "a/dev0/util", "a/dev1/mem", "a/dev1/util"}
    assert list(_trace(dev, "a/dev1/mem").x) == [1.0, 2.0]  # minutes since start
    assert _trace(dev, "a/dev1/util").xaxis == "x2"
    assert _trace(loss, "a/val_loss").line.color == figures.run_color(1)


def test_empty_figure_says_no_data() -> None:
    fig = figures.build_figure("loss", [])
    assert "no data" in fig.layout.annotations[0].text


def test_figures_hold_plain_lists_so_patches_can_extend_them() -> None:
    fig = figures.build_figure("accuracy", figures.run_series("a", 0, _events(2), 0.0)["accuracy"])
    data = json.loads(fig.to_json())["data"]
    assert all(isinstance(t["x"], list) for t in data)  # not base64 typed arrays


def test_patch_extends_known_traces_and_appends_new_ones() -> None:
    full = figures.run_series("a", 0, _events(1), 0.0)["devices"]
    keys = figures.figure_keys(full)
    new = figures.run_series("a", 0, [
        {"kind": "device", "time": 120.0, "epoch": 2, "index": 0, "mem_used_mib": 5.0,
         "util_pct": 1.0},
        {"kind": "device", "time": 120.0, "epoch": 2, "index": 2, "mem_used_mib": 7.0,
         "util_pct": 2.0},
    ], 0.0, all_events=[])["devices"]  # fmt: skip
    patch, new_keys = figures.patch_figure("devices", keys, new)
    ops = patch.to_plotly_json()["operations"]
    assert {"operation": "Extend", "location": ["data", 0, "x"], "params": {"value": [2.0]}} in ops
    appended = [op for op in ops if op["operation"] == "Append"]
    assert len(appended) == 2 and appended[1]["params"]["value"]["xaxis"] == "x2"
    assert new_keys == [*keys, "a/dev2/mem", "a/dev2/util"]


def test_patch_of_nothing_is_none() -> None:
    keys = figures.figure_keys(figures.run_series("a", 0, _events(1), 0.0)["loss"])
    patch, same = figures.patch_figure(
        "loss", keys, figures.run_series("a", 0, [], 0.0, [])["loss"]
    )
    assert patch is None and same == keys


def test_epoch_axes_tick_whole_epochs_and_thin_out_for_long_runs() -> None:
    short = figures.build_figure("loss", figures.run_series("a", 0, _events(3), 0.0)["loss"])
    assert (short.layout.xaxis.tick0, short.layout.xaxis.dtick) == (1, 1)
    long = figures.build_figure("loss", figures.run_series("a", 0, _events(60), 0.0)["loss"])
    assert long.layout.xaxis.dtick == 5  # 60 epochs: a tick every 5, about a dozen labels
    acc = figures.build_figure("accuracy", figures.run_series("a", 0, _events(3), 0.0)["accuracy"])
    assert acc.layout.xaxis.dtick == acc.layout.xaxis2.dtick == 1
    keys = figures.figure_keys(figures.run_series("a", 0, _events(12), 0.0)["loss"])
    grown = figures.run_series("a", 0, _events(40)[-2:], 0.0)["loss"]
    patch, _ = figures.patch_figure("loss", keys, grown)
    assert patch is not None and patch.to_plotly_json()["operations"]
    ops = [op for op in patch.to_plotly_json()["operations"] if op["location"][0] == "layout"]
    assert ops and ops[0]["params"]["value"] == 4  # epoch 40 of a long run: every 4th epoch
