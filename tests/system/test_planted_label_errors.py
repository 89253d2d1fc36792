"""Real photos with planted label errors (bench/planted_bench.py at a smaller size): 5% of
real-photos-10's validation images moved into a wrong class folder, the trainer's default
recipe, 3 epochs on half the training photos. Among the first k of the label-issue ranking
(k = the number moved), the share of moved images against chance and against cleanlab's
find_label_issues on the same model's full probabilities (the exported ONNX model of the last
epoch, run on the validation images with onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.planted_bench import REAL_PHOTOS, measure

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realphotos,
    pytest.mark.skipif(not REAL_PHOTOS.is_dir(), reason=f"needs {REAL_PHOTOS}"),
]


def test_planted_label_errors_rank_first(tmp_path: Path, output_dir: Path) -> None:
    pytest.importorskip("cleanlab")
    figures = measure(tmp_path, train_per_class=250, epochs=3)
    (output_dir / "planted_label_errors.json").write_text(json.dumps(figures, indent=1))
    assert figures["config"]["moved"] == 50
    # the stored scores are the same model's: its ONNX export agrees with them
    assert figures["stored_vs_onnx_max_diff"] < 2e-3, figures
    assert figures["epochscope_p_at_k"] >= 3 * figures["chance"], figures
    assert figures["epochscope_p_at_k"] >= 0.9 * figures["cleanlab_p_at_k"], figures
