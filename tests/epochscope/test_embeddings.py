"""Stored validation embeddings (epochscope/embeddings.py, docs/run-directory.md): the PCA keeps
what a map and a neighbour search need, a new photo's features land in the same space, the file
is read through the bounded reader, and the cosine search is exact."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from epochscope import layout, reader
from epochscope.embeddings import MAX_DIMS, embed, fit_projection, nearest, unit_rows
from epochscope.run import Run
from epochscope.writer import RunWriter
from tests.support import make_fake_run


def _clustered(n: int, f: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``classes`` clusters in ``f`` dimensions (ReLU outputs are non-negative)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (classes, f))
    labels = np.arange(n) % classes
    return np.maximum(centres[labels] + rng.normal(0, 1, (n, f)), 0).astype(np.float32), labels


def test_the_projection_is_the_pca_of_the_features() -> None:
    x, _ = _clustered(3000, 40, 6)
    p = fit_projection(x, dims=8)
    assert p.components.shape == (8, 40) and p.mean.shape == (40,)
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(8), atol=1e-5)
    # the same leading subspace as an SVD of all rows (fitted on every row here: 3000 < FIT_ROWS)
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    overlap = np.linalg.svd(p.components @ vt[:8].T, compute_uv=False)
    assert overlap.min() > 0.999
    # variance falls from the first component to the last
    variances = (p(x) ** 2).mean(axis=0)
    assert np.all(np.diff(variances) <= 1e-3 * variances[0])


def test_a_new_photo_lands_beside_its_class() -> None:
    x, labels = _clustered(2000, 64, 10, seed=1)
    stored = embed(x)
    assert stored.vectors.dtype == np.float16 and stored.vectors.shape == (2000, 64)
    new, new_labels = _clustered(200, 64, 10, seed=1)  # same centres, new noise
    new = new + np.random.default_rng(9).normal(0, 0.5, new.shape).astype(np.float32)
    unit = unit_rows(stored.vectors)
    right = 0
    for feat, label in zip(new, new_labels, strict=True):
        idx, dist = nearest(unit, stored.projection(feat), k=10)
        assert np.all(np.diff(dist) >= 0) and len(idx) == 10
        right += np.bincount(labels[idx]).argmax() == label
    assert right / len(new) > 0.95


def test_nearest_is_exact_and_leaves_the_image_itself_out() -> None:
    rng = np.random.default_rng(3)
    unit = unit_rows(rng.normal(size=(5000, 32)))
    q = rng.normal(size=32)
    idx, dist = nearest(unit, q, k=7)
    brute = np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")[:7]
    np.testing.assert_array_equal(idx, brute)
    np.testing.assert_allclose(dist, 1 - unit[brute] @ (q / np.linalg.norm(q)), atol=1e-5)
    own, _ = nearest(unit, unit[42], k=3, exclude=42)
    assert 42 not in own
    assert len(nearest(unit[:2], q, k=10)[0]) == 2


def test_wide_features_keep_at_most_128_dimensions_and_narrow_ones_keep_theirs() -> None:
    assert embed(np.random.default_rng(0).random((300, 512))).vectors.shape == (300, MAX_DIMS)
    assert embed(np.random.default_rng(0).random((300, 20))).vectors.shape == (300, 20)
    with pytest.raises(ValueError, match="one row per validation image"):
        embed(np.zeros(10))


def test_written_embeddings_load_through_the_run(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, "r", epochs_done=2)
    x, _ = _clustered(20, 48, 5)
    w = RunWriter(run_dir)
    path = w.write_embeddings(2, embed(x))
    assert path == layout.embeddings_path(run_dir, 2)
    run = Run(run_dir)
    assert run.embedding_epochs == [2]
    e = run.embeddings()
    assert e.vectors.shape == (20, 20) and e.projection.features == 48
    np.testing.assert_allclose(e.vectors, embed(x).vectors)
    with pytest.raises(LookupError, match="for epoch 1"):
        run.embeddings(1)
    old = Run(make_fake_run(tmp_path, "old", epochs_done=1))
    with pytest.raises(LookupError, match="no validation embeddings were stored"):
        old.embeddings()


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(exist_ok=True)
    with path.open("wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"vectors": np.zeros((20, 200), np.float16)}, r"D <= 128"),
        ({"vectors": np.zeros((19, 8), np.float16)}, "expected 20"),
        ({"mean": np.zeros(7, np.float32)}, "must be \\[F\\] and"),
        ({"vectors": np.array([["a"] * 8] * 20)}, "not integers or floats"),
    ],
)
def test_a_damaged_embeddings_file_is_refused_unread(
    tmp_path: Path, arrays: dict, message: str
) -> None:
    run_dir = make_fake_run(tmp_path, "r", epochs_done=1)
    good = {"vectors": np.zeros((20, 8), np.float16), "mean": np.zeros(16, np.float32),
            "components": np.zeros((8, 16), np.float32)}  # fmt: skip
    _save(layout.embeddings_path(run_dir, 1), **{**good, **arrays})
    with pytest.raises(ValueError, match=message):
        reader.load_embeddings(run_dir, 1, 20)


@pytest.mark.slow  # a real server or a large decode: seconds
def test_a_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, "r", epochs_done=1)
    path = layout.embeddings_path(run_dir, 1)
    path.parent.mkdir()
    header = b"\x93NUMPY\x01\x00v\x00{'descr': '<f2', 'fortran_order': False, 'shape': (20, 8), }"
    header = header.ljust(127, b" ") + b"\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:  # declares 320 bytes, holds 1 GB
        z.writestr("vectors.npy", header + b"\0" * (1 << 30))
        z.writestr("mean.npy", header)
        z.writestr("components.npy", header)
    with pytest.raises(ValueError, match="not what its header says"):
        reader.load_embeddings(run_dir, 1, 20)
