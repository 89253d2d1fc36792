"""``python -m epochscope sync LOCAL URL``: runs written where there are no bucket credentials
(a cluster node, a laptop) sent to a bucket. A finished run goes up once; a live one (its
run.lock held) is followed as it grows until it ends. Idempotent: a second sync of an unchanged
run sends nothing but its head; a sync killed half way is finished by the next one.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from epochscope.layout import LOCK, RUN_JSON, RUN_NAME_RE
from epochscope.lock import lock_is_held
from epochscope.storage.location import StorageError, is_remote, redact
from epochscope.storage.store import Store, open_store
from epochscope.storage.upload import RunLeaseError, Upload


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "sync",
        help="upload runs to a bucket (s3://, az://, gs://), following live ones",
        description="Upload a run directory, or every run in a runs folder, to a bucket prefix "
        "the dashboard reads (python -m dashboard --runs-dir URL). Finished runs go up once; "
        "live runs are followed until they end. Safe to repeat and to interrupt.",
    )
    p.add_argument("local", metavar="LOCAL", help="a run directory or a folder of runs")
    p.add_argument("url", metavar="URL", help="the runs prefix, e.g. s3://bucket/runs")
    p.add_argument("--every", type=float, default=10.0, metavar="S",
                   help="seconds between passes over live runs (default 10)")  # fmt: skip
    p.add_argument("--once", action="store_true",
                   help="one pass, also over live runs, then exit (leaves them open)")  # fmt: skip


def local_runs(local: Path) -> list[Path]:
    """LOCAL itself when it is a run, else the runs in it (valid names with a run.json)."""
    if (local / RUN_JSON).is_file():
        return [local]
    if not local.is_dir():
        raise StorageError(f"{local}: not a run directory or a folder of runs")
    return sorted(p for p in local.iterdir()
                  if RUN_NAME_RE.fullmatch(p.name) and (p / RUN_JSON).is_file())  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def main(ns: argparse.Namespace) -> int:
    if not is_remote(ns.url):
        print(f"error: {ns.url!r} is not a bucket URL (s3://, az://, gs://)", file=sys.stderr)
        return 2
    try:
        store = Store(ns.url)
        runs = local_runs(Path(ns.local))
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"error: no runs in {ns.local}", file=sys.stderr)
        return 2
    uploads: list[Upload] = []
    try:
        for run_dir in runs:
            upload = Upload(run_dir, store, run_dir.name)
            upload.acquire()
            uploads.append(upload)
        open_runs = list(uploads)
        while open_runs:
            for upload in list(open_runs):
                live = lock_is_held(upload.run_dir / LOCK)
                before = upload.bytes_up
                upload.sync(final=not live and not ns.once)
                sent = upload.bytes_up - before
                state = "live, following" if live else "up to date"
                print(f"{upload.where}: {state}" + (f" (+{_mb(sent)})" if sent else ""),
                      flush=True)  # fmt: skip
                if not live or ns.once:
                    open_runs.remove(upload)
            if open_runs:
                time.sleep(ns.every)
    except RunLeaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: run the same command again to finish", file=sys.stderr)
        return 130
    except (OSError, ValueError) as e:
        print(f"error: {redact(ns.url)}: {type(e).__name__}: {e} (run the same command again "
              "to finish; what went up stays up)", file=sys.stderr)  # fmt: skip
        return 1
    finally:
        for upload in uploads:
            with contextlib.suppress(OSError, ValueError):
                upload.release()
    total = sum(u.bytes_up for u in uploads)
    print(f"synced {len(uploads)} run(s) to {store.shown}: {_mb(total)} sent")
    return 0


def upload_once(run_dir: Path, url: str, storage_options: dict[str, Any] | None = None) -> Upload:
    """Send one finished run up whole (an importer's result), as its one writer."""
    upload = Upload(run_dir, open_store(url, storage_options), run_dir.name)
    upload.acquire()
    try:
        upload.sync(final=True)
    finally:
        upload.release()
    return upload
