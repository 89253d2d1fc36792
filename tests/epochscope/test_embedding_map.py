"""The embedding map's numbers: UMAP layout (deterministic, oriented), the layout cache (one
process computes, others wait or see "computing"; bounded reads; never the run directory), and
the band silhouette."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bench.synthetic_embeddings import features, write_embeddings
from bench.synthetic_runs import write_run
from epochscope import maps
from epochscope.analysis.embedding_map import group_labels, layout, orient, silhouette
from epochscope.run import open_run
from tests.waits import run_watched

REPO = Path(__file__).resolve().parents[2]


def clustered(n_per: int = 60, k: int = 4, dims: int = 16, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dims)) * 6
    labels = np.repeat(np.arange(k), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


@pytest.fixture
def banded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 20-class WordNet run (10 images a class, 3 epochs) whose bands draw apart."""
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    run = write_run(tmp_path / "runs" / "banded", num_classes=20, per_class=10, epochs=3)
    write_embeddings(run)
    return run


# --- silhouette -----------------------------------------------------------------------------------
def test_silhouette_agrees_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    x, labels = clustered(n_per=40, k=5, seed=1)
    x += np.random.default_rng(2).normal(size=x.shape).astype(np.float32) * 4
    labels[7] = 9  # a group of one scores 0, as scikit-learn's does
    ours = silhouette(x, labels)
    theirs = sklearn_metrics.silhouette_score(x, labels, metric="cosine")
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_silhouette_of_bands_that_separate_and_that_do_not():
    labels = np.repeat(np.arange(12), 30)
    class_bands = ["dogs"] * 4 + ["birds"] * 4 + ["tools"] * 4
    groups, names = group_labels(labels, class_bands)
    assert names == ["birds", "dogs", "tools"]
    apart = silhouette(features(labels, class_bands, progress=1.0), groups)
    mixed = silhouette(features(labels, class_bands, progress=0.0), groups)
    assert apart is not None and mixed is not None
    assert apart > 0.3 and abs(mixed) < 0.05


def test_silhouette_leaves_out_classes_outside_the_hierarchy_and_needs_two_groups():
    labels = np.repeat(np.arange(3), 20)
    groups, _ = group_labels(labels, ["dogs", "", "birds"])
    assert (groups[20:40] == -1).all()
    x = features(labels, ["dogs", "x", "birds"], 1.0)
    assert silhouette(x, groups) is not None
    assert silhouette(x, group_labels(labels, ["dogs", "", ""])[0]) is None


def test_silhouette_samples_at_most_its_limit_the_same_way_every_time():
    x, labels = clustered(n_per=500, k=4)
    a = silhouette(x, labels, most=300, seed=0)
    assert a == silhouette(x, labels, most=300, seed=0)
    assert a != silhouette(x, labels, most=300, seed=1)  # another sample, another estimate
    assert a == pytest.approx(silhouette(x, labels), abs=0.05)


def test_band_silhouette_rises_over_the_synthetic_runs_epochs(banded_run: Path):
    run = open_run(banded_run)
    assert run.silhouette_groups == "bands"
    epochs, values = run.silhouette_series()
    assert epochs == [1, 2, 3]
    assert values[0] < values[1] < values[2]


# --- layout -----------------------------------------------------------------------------------
def test_orient_turns_and_mirrors_back_onto_the_reference():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(100, 2))
    turn = np.array([[0.0, -1.0], [1.0, 0.0]]) @ np.diag([1.0, -1.0])  # turned and mirrored
    out = orient(ref @ turn * 7 + 3, ref)
    expected = (ref - ref.mean(0)) / np.abs(ref - ref.mean(0)).max()
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.slow  # UMAP's kernels: compiled (~20 s) or loaded from numba's cache
def test_layout_is_deterministic_in_range_and_keeps_clusters_apart():
    x, labels = clustered()
    a = layout(x)
    b = layout(x)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (len(x), 2)
    assert np.abs(a).max() == pytest.approx(1.0)
    centres = np.stack([a[labels == k].mean(0) for k in range(4)])
    spread = max(np.linalg.norm(a[labels == k] - centres[k], axis=1).mean() for k in range(4))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(4) for j in range(i)]
    assert min(gaps) > 2 * spread
    assert np.abs(layout(x[:3])).max() <= 1.0  # too few for UMAP: principal coordinates


KERNELS_FROM_DISK = """
import json, sys, numpy as np
from epochscope.analysis.embedding_map import layout
import umap.umap_, umap.utils
coords = layout(np.load(sys.argv[1]))
print(json.dumps({"hits": [len(k.stats.cache_hits) for k in
                           (umap.umap_.smooth_knn_dist, umap.utils.fast_knn_indices)],
                  "coords": coords.tolist()}))
"""


@pytest.mark.slow  # a process that imports UMAP
def test_a_new_process_loads_umaps_kernels_from_disk_and_lays_out_the_same(tmp_path: Path):
    """umap-learn's kernels compiled once are loaded by the next process (not compiled again,
    ~20 s here), and the layout they give is the same."""
    x, _ = clustered()
    here = layout(x)  # compiles, or loads, and caches
    np.save(tmp_path / "x.npy", x)
    proc = run_watched([sys.executable, "-c", KERNELS_FROM_DISK, str(tmp_path / "x.npy")], 300,
                       "a layout process", cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(hits > 0 for hits in reply["hits"]), reply["hits"]
    np.testing.assert_array_equal(np.array(reply["coords"], dtype=np.float32), here)


# --- the cache ------------------------------------------------------------------------------------
COMPUTE = """
import hashlib, json, sys, time
from epochscope import maps
from epochscope.run import open_run
coords, computed = maps.ensure(open_run(sys.argv[1]), int(sys.argv[2]))
print(json.dumps({"computed": computed, "sha": hashlib.sha256(coords.tobytes()).hexdigest()}))
"""


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.slow  # two processes each import UMAP
def test_two_processes_compute_a_layout_once_outside_the_run(banded_run: Path, tmp_path: Path):
    before = _files(banded_run)
    env = {**os.environ, maps.CACHE_ENV: str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", COMPUTE, str(banded_run), "3"]
    with ThreadPoolExecutor(2) as pool:  # both at once: one computes, the other waits on it
        runs = [
            pool.submit(run_watched, cmd, 300, "a layout process", cwd=REPO, env=env)
            for _ in range(2)
        ]
        done = [r.result() for r in runs]
    replies = []
    for p in done:
        assert p.returncode == 0, p.stderr[-2000:]
        replies.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert sorted(r["computed"] for r in replies) == [False, True]
    assert replies[0]["sha"] == replies[1]["sha"]
    assert _files(banded_run) == before  # the run directory is never written
    cached = list((tmp_path / "cache" / "banded").glob("map-epoch-0003-*.npy"))
    assert len(cached) == 1
    # a third look reads the file; a Run in this process gets the same layout without computing
    run = open_run(banded_run)
    assert maps.ensure(run, 3)[1] is False
    assert run.cached_map_layout(3) is not None and run.cached_map_layout(2) is None


def test_a_held_lock_reads_as_computing_and_does_not_block_a_view(banded_run: Path):
    run = open_run(banded_run)
    path = maps.layout_path(run.path, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(maps._lock_path(path), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process computing
        assert maps.computing(run, 2)
        assert maps.ensure(run, 2, wait=False) == (None, False)
    finally:
        os.close(fd)
    assert not maps.computing(run, 2)


def test_cached_layouts_are_read_bounded_and_damage_is_ignored(banded_run: Path):
    run = open_run(banded_run)
    path = maps.layout_path(run.path, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    good = np.zeros((len(run.labels), 2), np.float32)
    np.save(path, good)
    assert maps.cached(run, 1) is not None
    for bad in (
        np.zeros((len(run.labels) + 1, 2), np.float32),  # another run's rows
        np.zeros((len(run.labels), 2), np.float64),
        np.full((len(run.labels), 2), np.nan, np.float32),
    ):
        np.save(path, bad)
        assert maps.cached(run, 1) is None
    path.write_bytes(b"\x93NUMPY" + b"x" * (10 << 20))  # larger than any layout of this run
    assert maps.cached(run, 1) is None
    path.write_bytes(b"not a numpy file")
    assert maps.cached(run, 1) is None


def test_the_cache_key_follows_the_embeddings_file(banded_run: Path):
    first = maps.layout_path(banded_run, 2)
    assert first.name.startswith("map-epoch-0002-")
    assert maps.layout_path(banded_run, 2) == first
    os.utime(banded_run / "embeddings" / "epoch-0002.npz", ns=(1, 1))  # rewritten
    assert maps.layout_path(banded_run, 2) != first
    with pytest.raises(LookupError):
        maps.layout_path(banded_run, 9)


def test_the_cache_lives_beside_the_runs_or_in_tmp_when_that_is_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv(maps.CACHE_ENV, raising=False)
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    assert maps.cache_root(runs / "r") == runs / maps.CACHE_FOLDER
    locked = tmp_path / "ro"
    (locked / "r").mkdir(parents=True)
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who may write anywhere")
        assert maps.cache_root(locked / "r").parent == Path(__import__("tempfile").gettempdir())
    finally:
        locked.chmod(0o755)


def test_a_written_layout_prunes_the_layouts_of_runs_gone_from_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The cache beside RUNS: a removed run's folder goes when a layout is next written; the
    runs still there (a symlinked one too) keep theirs. A cache named by EPOCHSCOPE_CACHE_DIR
    may serve other runs folders: never pruned."""
    monkeypatch.delenv(maps.CACHE_ENV, raising=False)
    runs = tmp_path / "runs"
    run = write_run(runs / "kept", num_classes=20, per_class=2, epochs=1)
    write_embeddings(run)
    (tmp_path / "elsewhere").mkdir()
    (runs / "linked").symlink_to(tmp_path / "elsewhere")
    cache = runs / maps.CACHE_FOLDER
    for name in ("kept", "linked", "gone", "also-gone"):
        (cache / name).mkdir(parents=True)
        np.save(cache / name / "map-epoch-0001-0.npy", np.zeros((40, 2), np.float32))
    (cache / "stray-file").write_text("not a run's folder")
    coords, computed = maps.ensure(open_run(run), 1)  # computes, writes, prunes
    assert computed and coords.shape == (40, 2)
    assert sorted(p.name for p in cache.iterdir()) == ["kept", "linked", "stray-file"]
    assert [p.name for p in (cache / "kept").glob("*.npy")] == [maps.layout_path(run, 1).name]
    # a shared cache: nothing removed, even for a name not in this runs folder
    shared = tmp_path / "shared"
    (shared / "other-runs-folders-run").mkdir(parents=True)
    monkeypatch.setenv(maps.CACHE_ENV, str(shared))
    assert maps.prune(run) == []
    assert (shared / "other-runs-folders-run").is_dir()


@pytest.mark.slow  # the session's real tiny training run
def test_band_silhouette_rises_over_the_demo_runs_epochs(tiny_run: Path):
    """The seed's "animals separate from objects", measured on a real training run."""
    run = open_run(tiny_run)
    assert run.embedding_epochs == run.epochs  # the trainer stores them every epoch
    epochs, values = run.silhouette_series()
    assert run.silhouette_groups == "bands"
    assert len(epochs) >= 2 and all(v is not None for v in values)
    assert values[-1] > values[0]


def test_a_run_with_more_images_than_the_map_takes_is_refused_not_laid_out(
    banded_run: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(maps, "MAX_MAP_POINTS", 100)  # the run has 200 images
    run = open_run(banded_run)
    with pytest.raises(ValueError, match="lays out at most 100"):
        maps.ensure(run, 2)
    assert not maps.layout_path(run.path, 2).exists()
