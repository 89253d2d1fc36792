"""Runs in a bucket, against real storage servers (moto's S3 server, Azurite): written by the
one writer, uploaded off the training thread, read through the one provider as a local run
reads, within the request budget of docs/storage.md, and never a folder named ``s3:``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import epochscope
from epochscope import Runs, open_run
from epochscope.lock import RunLockedError
from epochscope.storage import StorageError, local_folder
from epochscope.storage.bucket import HEAD, Head, md5
from epochscope.storage.store import Store
from tests.storage_servers import S3_SECRET, s3_server
from tests.waits import wait_for

CLASSES = list("abcde")
LABELS = np.arange(40) % 5
EMPTY_MD5 = "99914b932bd37a50b983c5e7c90ae93b"  # of b"{}"


def logits(epoch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + epoch)
    return rng.normal(size=(len(LABELS), 5)) + np.eye(5)[LABELS] * epoch


def staging(tmp_path: Path) -> Path:
    """The one staging folder a test's writer used (under its EPOCHSCOPE_CACHE_DIR)."""
    (folder,) = (tmp_path / "cache" / "staging").iterdir()
    return folder


def same_run(a: epochscope.Run, b: epochscope.Run) -> None:
    assert a.epochs == b.epochs
    assert a.classes == b.classes and np.array_equal(a.labels, b.labels)
    assert a.epoch_events == b.epoch_events
    for e in a.epochs:
        for x, y in zip(a.predictions(e), b.predictions(e), strict=True):
            assert np.array_equal(x, y)
        assert np.array_equal(a.confusion(e).counts, b.confusion(e).counts)


def test_a_run_logged_to_a_bucket_reads_as_its_local_copy(s3, tmp_path: Path) -> None:
    url = f"s3://{s3.new_bucket()}/team/runs"
    with epochscope.init("r1", url, classes=CLASSES, val_labels=LABELS, epochs=3) as run:
        for e in (1, 2, 3):
            run.log_predictions(e, logits(e))
            run.log_epoch(e, train_loss=1.0 / e)
    local = open_run(staging(tmp_path) / "r1")
    runs = Runs(url)
    assert runs.names() == ["r1"] and repr(runs) == f"<epochscope Runs {url!r}>"
    bucket_run = runs.run("r1")
    same_run(bucket_run, local)
    assert bucket_run.state == "finished"
    assert same_run(open_run(f"{url}/r1"), local) is None  # the notebook's way in
    # the bucket holds the format: a closed head naming every file, one folded log segment
    store = Store(url)
    head = Head.parse(store.get(f"r1/{HEAD}", 1 << 20), "head")
    assert head.closed and len(head.metrics) == 1
    assert {"run.json", "classes.tsv", "predictions/epoch-0003.npz"} <= set(head.files)
    assert "writer.lease" not in store.names("r1")  # released at the end
    # no secret in any file written here or any object in the bucket
    for path in (tmp_path / "cache").rglob("*"):
        assert not path.is_file() or S3_SECRET.encode() not in path.read_bytes(), path
    for rel in store.fs.find(store.root):
        assert S3_SECRET.encode() not in store.fs.cat_file(rel), rel


def test_a_live_run_grows_in_the_reader_and_an_idle_poll_costs_one_request(
    s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3.new_bucket()}/runs"
    run = epochscope.init("live", url, classes=CLASSES, val_labels=LABELS, epochs=3)
    runs = Runs(url)
    try:
        for e in (1, 2):
            run.log_predictions(e, logits(e))
            run.log_epoch(e)
            wait_for(lambda e=e: runs.epochs("live") == list(range(1, e + 1)), 30,
                     f"epoch {e} in the bucket's reader")  # fmt: skip
        assert runs.run("live").state == "running"
        assert runs.run("live").epoch_events.keys() == {1, 2}
        before = len(s3.requests)
        monkeypatch.setenv("EPOCHSCOPE_POLL_SECONDS", "0")
        polls = 0
        while polls < 5:  # idle: only the reader asks (the writer beats every 15 s)
            runs._mirror.refresh_run("live")
            polls += 1
        reads = [r for r in s3.requests[before:] if "/live/" in r and "lease" not in r]
        heads = [r for r in reads if '"HEAD ' in r and "head.json" in r]
        assert len(heads) == polls and len(reads) <= polls + 2, reads  # +2: a beat's head
    finally:
        run.finish()
    wait_for(lambda: Runs(url).run("live").state == "finished", 30, "the finished state")


def test_one_writer_per_bucket_run_and_resume_from_another_machine(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3.new_bucket()}/runs"
    first = epochscope.init("r", url, classes=CLASSES, val_labels=LABELS)
    first.log_predictions(1, logits(1))
    first.log_epoch(1)
    # another machine (its own cache) cannot write the run while this writer lives
    monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "other-machine"))
    with pytest.raises(RunLockedError, match="being written"):
        epochscope.init("r", url, classes=CLASSES, val_labels=LABELS, resume=True)
    first.finish()
    # now it can: it fetches the run, continues after epoch 1, and the bucket has both
    with epochscope.init("r", url, classes=CLASSES, val_labels=LABELS, resume=True) as again:
        again.log_predictions(2, logits(2))
        again.log_epoch(2)
    run = Runs(url).run("r")
    assert run.epochs == [1, 2] and sorted(run.epoch_events) == [1, 2]
    assert run.state == "finished"


def test_a_store_that_goes_down_loses_no_epoch(tmp_path: Path, monkeypatch) -> None:
    """Its own server, stopped while training goes on: log calls return at once, the writer
    says in the log that it retries, and everything is in the bucket once the store is back."""
    with s3_server() as server:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
        url = f"s3://{server.new_bucket()}/runs"
        run = epochscope.init("r", url, classes=CLASSES, val_labels=LABELS)
        run.log_predictions(1, logits(1))
        run.log_epoch(1)
        upload = run._writer._upload
        wait_for(lambda: upload.upload.head and upload.upload.head.metrics_end, 30, "epoch 1 up")
        server.stop()
        started = time.monotonic()
        for e in (2, 3):
            run.log_predictions(e, logits(e))
            run.log_epoch(e)
        assert time.monotonic() - started < 5, "logging waited for the store"
        wait_for(lambda: upload.failures >= 1, 60, "the upload to notice the store is down")
        server.start()
        run.finish()  # the final pass retries until the store answers
        assert upload.failures == 0
        assert Runs(url).run("r").epochs == [1, 2, 3]


def test_sync_sends_a_run_once_follows_a_live_one_and_finishes_a_killed_one(
    s3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from epochscope.cli import main

    local = tmp_path / "runs"
    with epochscope.init("done", local, classes=CLASSES, val_labels=LABELS) as run:
        for e in (1, 2):
            run.log_predictions(e, logits(e))
            run.log_epoch(e)
    url = f"s3://{s3.new_bucket()}/runs"
    assert main(["sync", str(local / "done"), url]) == 0
    assert "up to date" in capsys.readouterr().out
    same_run(Runs(url).run("done"), open_run(local / "done"))
    # again: nothing but the head and the lease is put
    before = len(s3.requests)
    assert main(["sync", str(local), url]) == 0
    out = capsys.readouterr().out
    puts = [r for r in s3.requests[before:] if '"PUT ' in r]
    assert "0.0 MB sent" in out and all("head.json" in r or "lease" in r for r in puts), puts
    # a sync killed before its head: the next one finishes it
    store = Store(url)
    store.remove(f"done/{HEAD}")
    store.remove("done/predictions/epoch-0002.npz")
    assert main(["sync", str(local), url]) == 0
    same_run(Runs(url).run("done"), open_run(local / "done"))
    # a live local run (its writer holds run.lock): --once sends it and leaves it open
    live = epochscope.init("live", local, classes=CLASSES, val_labels=LABELS)
    try:
        live.log_predictions(1, logits(1))
        live.log_epoch(1)
        assert main(["sync", str(local / "live"), url, "--once"]) == 0
        assert "live, following" in capsys.readouterr().out
        reader = Runs(url).run("live")
        assert reader.epochs == [1] and reader.state == "running"
    finally:
        live.finish()


def test_a_hostile_head_writes_nothing_outside_the_mirror_and_nothing_over_its_cap(
    s3, tmp_path: Path
) -> None:
    url = f"s3://{s3.new_bucket()}/runs"
    store = Store(url)
    big = 300 << 20  # over the 256 MiB cap of an epoch's predictions
    evil = {"format": 1, "version": 1, "writer": "x", "heartbeat": 0, "closed": True,
            "files": {"../../escape.txt": [3, "x"], "/etc/evil": [3, "x"],
                      "predictions/../../up.npz": [3, "x"],
                      "predictions/epoch-0001.npz": [big, "x"], "run.json": [2, EMPTY_MD5]},
            "metrics": []}  # fmt: skip
    store.put(f"h/{HEAD}", json.dumps(evil).encode())
    store.put("h/run.json", b"{}")
    store.put("h/predictions/epoch-0001.npz", b"tiny, but the head says 300 MiB")
    for name in ("escape.txt", "../escape.txt"):
        store.put(f"h/{name}", b"bad")
    before = len(s3.requests)
    runs = Runs(url)
    runs.summaries()
    fetched = s3.requests[before:]
    assert not any("predictions" in r and '"GET ' in r for r in fetched), fetched
    cache = tmp_path / "cache"
    written = {p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()}
    assert all("/mirror/" in f"/{w}" and "escape" not in w and "evil" not in w for w in written)
    assert not (tmp_path / "escape.txt").exists()
    mirrored = [w for w in written if w.endswith("/h/run.json")]
    assert len(mirrored) == 1  # the one sound file came through
    for name in ("../h", "h/../../x", ".bucket", "/etc"):  # a run name cannot leave its prefix
        with pytest.raises(ValueError):
            runs.run(name)


def test_urls_are_never_local_folders(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for text in ("s3:bucket/runs", "s3:/bucket/runs", "gs:b/r"):
        with pytest.raises(StorageError, match="missing its slashes"):
            local_folder(text)
    with pytest.raises(StorageError, match=r"no storage for ftp://"):
        Runs("ftp://host/runs")
    with pytest.raises(StorageError, match=r"pip install 'epochscope\[gcs\]'"):
        Runs("gs://bucket/runs")  # gcsfs is not installed here
    from trainer.cli import main as trainer_main

    code = trainer_main(
        ["train", "--data", str(tmp_path), "--runs-dir", "s3:/b/runs", "--name", "r"]
    )
    assert code == 2 and "missing its slashes" in capsys.readouterr().err
    from dashboard.__main__ import main as dashboard_main

    assert dashboard_main(["--runs-dir", "gs://bucket/runs"]) == 2
    assert "epochscope[gcs]" in capsys.readouterr().err
    assert not any(p.name.endswith(":") for p in tmp_path.rglob("*")), "a URL became a folder"


def test_the_dashboard_refuses_a_bucket_it_cannot_list(s3, capsys) -> None:
    from dashboard.__main__ import main as dashboard_main

    assert dashboard_main(["--runs-dir", "s3://no-such-bucket-here/runs"]) == 2
    err = capsys.readouterr().err
    assert "cannot list s3://no-such-bucket-here/runs" in err and S3_SECRET not in err


def test_azure_blob_storage_holds_a_run_like_s3(
    azurite_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_session.connection_string)
    monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    url = f"az://{azurite_session.new_container()}/runs"
    with epochscope.init("r", url, classes=CLASSES, val_labels=LABELS) as run:
        for e in (1, 2):
            run.log_predictions(e, logits(e))
            run.log_epoch(e)
        with pytest.raises(RunLockedError, match="being written"):  # adlfs' conditional write
            monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "other"))
            epochscope.init("r", url, classes=CLASSES, val_labels=LABELS, resume=True)
    monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    same_run(Runs(url).run("r"), open_run(staging(tmp_path) / "r"))
    key = azurite_session.connection_string.split("AccountKey=")[1].split(";")[0]
    for path in (tmp_path / "cache").rglob("*"):
        assert not path.is_file() or key.encode() not in path.read_bytes(), path


def test_mirror_is_bounded_least_recently_used_out(s3, monkeypatch, tmp_path: Path) -> None:
    url = f"s3://{s3.new_bucket()}/runs"
    for name in ("a", "b", "c"):
        with epochscope.init(name, url, classes=CLASSES, val_labels=LABELS) as run:
            run.log_predictions(1, logits(1))
            run.log_epoch(1)
    one = Runs(url)
    sizes = {n: sum(p.stat().st_size for p in (one.root / n).rglob("*") if p.is_file())
             for n in one.names()}  # fmt: skip
    limit = (sizes["a"] + sizes["b"] + sizes["c"] // 2) / (1 << 20)
    monkeypatch.setenv("EPOCHSCOPE_CACHE_MB", f"{limit:.9f}")
    monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "bounded"))
    runs = Runs(url)
    for name in ("a", "b", "c"):
        runs.run(name)
    kept = sorted(p.name for p in runs.root.iterdir() if not p.name.startswith("."))
    assert kept == ["b", "c"], kept  # a, used first, went out
    assert runs.run("a").epochs == [1]  # and comes back when looked at
    assert os.path.isdir(runs.root / "a")


WRITER = """
import sys, time, numpy as np, epochscope
labels = np.arange(40) % 5
run = epochscope.init("k", sys.argv[1], classes=list("abcde"), val_labels=labels)
for e in range(1, 100):
    rng = np.random.default_rng(e)
    run.log_predictions(e, rng.normal(size=(40, 5)) + np.eye(5)[labels] * e)
    run.log_epoch(e)
    time.sleep(0.3)
"""


def test_a_writer_killed_while_uploading_resumes_elsewhere_without_a_torn_epoch(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import subprocess
    import sys

    url = f"s3://{s3.new_bucket()}/runs"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url], env=dict(os.environ))
    runs = Runs(url)
    try:
        wait_for(lambda: len(runs.epochs("k")) >= 3, 60, "three epochs in the bucket", proc=proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = Store(url)
    head = Head.parse(store.get(f"k/{HEAD}", 1 << 20), "head")
    for rel, (size, digest) in head.files.items():  # every object the head names is whole
        assert md5(store.get(f"k/{rel}", size + 1)) == digest, rel
    acknowledged = Runs(url).run("k").epochs
    # another machine (a fresh cache) takes the dead writer's lease over and goes on
    monkeypatch.setenv("EPOCHSCOPE_CACHE_DIR", str(tmp_path / "elsewhere"))
    with epochscope.init("k", url, classes=CLASSES, val_labels=LABELS, resume=True) as run:
        nxt = max(acknowledged) + 1
        run.log_predictions(nxt, logits(nxt))
        run.log_epoch(nxt)
    after = Runs(url).run("k")
    assert after.epochs[: len(acknowledged)] == acknowledged and after.epochs[-1] == nxt
    assert sorted(after.epoch_events) == after.epochs


def _epochs_in_a_forked_child(url: str) -> list[int]:
    return Runs(url).run("r").epochs


def test_a_bucket_probed_before_a_fork_reads_in_the_child(s3) -> None:
    """gunicorn's workers fork from the process that probed the bucket: s3fs refuses to run
    its event loop in another process ("This class is not fork-safe"), so a store is made
    again in a child."""
    import multiprocessing

    url = f"s3://{s3.new_bucket()}/runs"
    labels = np.arange(20) % 4
    with epochscope.init("r", url, classes=list("abcd"), val_labels=labels) as run:
        run.log_predictions(1, np.eye(4)[labels] * 3.0)
        run.log_epoch(1)
    Runs(url).probe()  # as python -m dashboard does before gunicorn forks
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_epochs_in_a_forked_child, (url,)) == [1]
