"""The similar-images pieces of the classifier page and the drill-down (dashboard/kit/similar.py)
on a real run logged through the API with array images (thumbnails.bin) and features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import epochscope
from dashboard.kit import similar as similar_view
from epochscope.run import Run


def _run(tmp_path: Path, features: bool) -> Run:
    rng = np.random.default_rng(0)
    labels = np.arange(30) % 3
    images = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    feats = np.eye(3, dtype=np.float32)[labels] * 5 + rng.normal(0, 0.3, (30, 3))
    name = "with" if features else "without"
    with epochscope.init(name, tmp_path, classes=["a", "b", "c"], val_images=images,
                         val_labels=labels, image_size=16) as run:  # fmt: skip
        logits = np.eye(3, dtype=np.float32)[labels]
        run.log_predictions(1, logits, features=feats if features else None)
        run.log_epoch(1)
    return Run(tmp_path / name)


def test_row_neighbours_come_with_thumbnails_and_render_as_a_strip(tmp_path: Path) -> None:
    run = _run(tmp_path, features=True)
    epoch, items = similar_view.row_neighbours(run, 1, 4)
    assert epoch == 1 and len(items) == similar_view.K
    assert all(item["label"] == 1 and item["index"] != 4 for item in items)  # row 4: class b
    assert all(item["thumb"].startswith("data:image/jpeg;base64,") for item in items)
    strip = similar_view.strip(items, "Nearest", "strip-id")
    assert strip.id == "strip-id"
    cells = strip.children[1].children
    assert len(cells) == similar_view.K
    assert cells[0].children[1].children == "b" and cells[0].title.startswith(
        f"#{items[0]['index']} "
    )


def test_a_run_without_embeddings_says_so(tmp_path: Path) -> None:
    run = _run(tmp_path, features=False)
    with pytest.raises(LookupError, match="no validation embeddings were stored"):
        similar_view.row_neighbours(run, 1, 4)
