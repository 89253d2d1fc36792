"""Similar images on real photos (bench/similar_bench.py's ``similar_knn`` at a smaller size):
the trainer's default recipe on real-photos-10 (quarter-width ResNet-18 v2, 32 px, 3 epochs on
250 photos per class, validated on 50 per class); for 30 held-out training photos per class
(never trained on, not in validation), the majority label of the 10 neighbours that
``POST /api/v1/similar`` returns (a real gunicorn) is right within 5 points of the model's own
top-1 from ``POST /api/v1/classify`` on the same photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.similar_bench import REAL_PHOTOS, agreement, split_photos, train_default
from epochscope import reader
from tests.support import classify, http, multipart

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realphotos,
    pytest.mark.skipif(not REAL_PHOTOS.is_dir(), reason=f"needs {REAL_PHOTOS}"),
]


def test_neighbours_name_held_out_photos_as_well_as_the_model(
    tmp_path: Path, dashboard_server, output_dir: Path
) -> None:
    held = split_photos(REAL_PHOTOS, tmp_path / "photos", 250, 30, val_per_class=50)
    run_dir = train_default(tmp_path / "photos", tmp_path / "runs", "photos", epochs=3)
    epoch = reader.model_epochs(run_dir)[-1]
    assert reader.embedding_epochs(run_dir) == [1, 2, 3]
    base = dashboard_server(tmp_path / "runs")

    def query(data: bytes) -> tuple[list[int], int]:
        body, ctype = multipart({}, "photo.jpg", data)
        reply = http(f"{base}/api/v1/similar?run=photos&epoch={epoch}&k=10", body,
                     {"Content-Type": ctype})  # fmt: skip
        assert reply.status == 200, reply.body
        neighbours = reply.json()
        assert len(neighbours) == 10
        top = classify(base, data, "photo.jpg", run="photos", epoch=epoch)
        assert top.status == 200, top.body
        return [n["label"] for n in neighbours], top.json()["top5"][0]["index"]

    figures = agreement(held, query)
    (output_dir / "similar_real_photos.json").write_text(json.dumps(figures, indent=1))
    assert figures["photos"] == 300
    assert figures["model_top1"] > 0.2, figures  # the model learnt something (chance: 0.1)
    assert figures["knn_top1"] >= figures["model_top1"] - 0.05, figures
