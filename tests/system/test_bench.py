"""The benchmark suite stays runnable: ``python -m bench --quick`` end to end, tiny sizes.

No timing is asserted: this machine is shared and noisy; the figures belong in
docs/performance.md, not in pass/fail. The run trains on subsets of real-photos-10 (the recipe,
planted-label and similar-images sections) and takes ~3 minutes on one core, so it belongs to
``make test-real``, not ``make test``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from bench.keys import KEYS, REQUIRED, extract
from tests.conftest import REPO
from tests.waits import run_watched


def _numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in _numbers(v)]
    return [float(tree)] if isinstance(tree, int | float) and not isinstance(tree, bool) else []


@pytest.mark.realphotos
@pytest.mark.slow
def test_quick_bench_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run_watched(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out),
         "--cache", str(tmp_path / "cache")],
        silence=300, what="python -m bench --quick", cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "latest.json").read_text())
    assert results["quick"] is True
    keys = results["keys"]
    for name in REQUIRED:
        assert name in keys, f"{name} missing"
        k = keys[name]
        if "skipped" in k:  # only what needs an absent tool (Chromium) may be skipped
            assert name == "epoch_to_screen_ms", k
            continue
        for field in ("median", "min", "max"):
            assert math.isfinite(k[field]), (name, field, k[field])
        assert k["verdict"] in ("met", "not met", "info")
    engines = keys.get("mxnet_vs_pytorch")
    assert engines is not None  # a ratio, or a clear skip without .venv-mxnet
    assert "skipped" in engines or math.isfinite(engines["median"])
    gpu = results["sections"]["gpu"]
    assert gpu == {"skipped": "no GPU"} or "bf16_matmul_tflops" in gpu
    assert all(math.isfinite(x) for x in _numbers(results["sections"]))
    assert sorted(p.name for p in out.iterdir()) == ["latest.json"]  # quick: only --out


def test_keys_extract_targets_and_skips() -> None:
    sections = {
        "trainer": {"demo_model": {"trainer_vs_reference": {"median": 0.9, "min": 0.8,
                                                            "max": 1.0, "repeats": 3}}},
        "confusion": {"reply_bytes_full_250k": 120_000},
        "engines": {"skipped": "no mxnet"},
    }  # fmt: skip
    keys = extract(sections)
    assert keys["trainer_vs_reference"]["verdict"] == "not met"
    assert keys["confusion_reply_kb"]["median"] == pytest.approx(120)
    assert keys["confusion_reply_kb"]["verdict"] == "met"
    mxnet = next(k for k in KEYS if k.name == "mxnet_vs_pytorch")
    assert keys["mxnet_vs_pytorch"] == {"skipped": "no mxnet", "note": mxnet.note}
    assert "loader_vs_train" not in keys


def test_an_only_run_replaces_its_sections_and_keeps_the_others() -> None:
    from bench.__main__ import _updated

    full = {"started": "2026-12-01", "quick": False, "commands": ["python -m bench"],
            "sections": {"confusion": {"reply_bytes_full_250k": 120_000},
                         "report": {"full": {"mb": 20.0}}}}  # fmt: skip
    part = {"started": "2026-12-07", "wall_seconds": 3.0,
            "commands": ["python -m bench --only report"],
            "sections": {"report": {"full": {"mb": 6.9}}}}  # fmt: skip
    merged = _updated(full, part, ["report"])
    assert merged["sections"]["confusion"] == full["sections"]["confusion"]
    assert merged["sections"]["report"] == {"full": {"mb": 6.9}}
    assert merged["keys"]["report_mb"]["median"] == 6.9
    assert merged["keys"]["confusion_reply_kb"]["median"] == pytest.approx(120)
    assert merged["started"] == "2026-12-01" and merged["commands"] == ["python -m bench"]
    assert merged["updates"] == [{"sections": ["report"], "started": "2026-12-07",
                                  "command": "python -m bench --only report",
                                  "wall_seconds": 3.0}]  # fmt: skip
