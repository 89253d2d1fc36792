"""The trainer's log is durable where it matters: an epoch or status line is fsync'ed before
``event`` returns (a step line is not: there are thousands), and a short ``os.write`` (a signal,
a nearly full disk) is finished, so the line is never left torn by the writer itself."""

from __future__ import annotations

import os
from pathlib import Path

from epochscope import writer
from epochscope.reader import MetricsLog


def _writer(tmp_path: Path) -> writer.RunWriter:
    w = writer.RunWriter(tmp_path / "run")
    w.acquire()
    return w


def test_epoch_and_status_lines_are_fsynced_steps_are_not(tmp_path: Path, monkeypatch) -> None:
    w = _writer(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", counting_fsync)
    try:
        for k in range(5):
            w.event("step", 1, step=k, epoch_step=k, steps_per_epoch=5, loss=1.0, lr=0.1,
                    img_per_s=10.0)  # fmt: skip
        assert synced == []
        w.event("epoch", 1, val_top5=0.5, val_top1=0.2)
        w.event("status", 1, state="finished")
    finally:
        w.close()
    assert [Path(p).name for p in synced] == ["metrics.jsonl", "metrics.jsonl"]


def test_a_short_write_is_finished(tmp_path: Path, monkeypatch) -> None:
    w = _writer(tmp_path)
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))  # the kernel took only 7 bytes this time

    monkeypatch.setattr(writer.os, "write", short_write)
    try:
        w.event("epoch", 1, val_top5=0.5, val_top1=0.2, note="x" * 100)
    finally:
        monkeypatch.undo()
        w.close()
    assert len(calls) > 10  # it kept writing the rest
    (event,) = MetricsLog(tmp_path / "run" / "metrics.jsonl").refresh()
    assert event["kind"] == "epoch" and event["note"] == "x" * 100


def test_an_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch
) -> None:
    """Without the first fsync a crash after ``os.replace`` can leave an empty file under the
    final name; without the second, the rename itself may not survive."""
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def counting_fsync(fd: int) -> None:
        order.append(f"fsync {Path(os.readlink(f'/proc/self/fd/{fd}')).name}")
        real_fsync(fd)

    def counting_replace(src, dst) -> None:
        order.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "fsync", counting_fsync)
    monkeypatch.setattr(writer.os, "replace", counting_replace)
    target = tmp_path / "run" / "run.json"
    writer.atomic_write(target, b"{}")
    tmp = f".run.json.tmp-{os.getpid()}"
    assert order == [f"fsync {tmp}", "replace run.json", "fsync run"]
    assert target.read_bytes() == b"{}"
