"""How a run directory maps onto a bucket (docs/run-directory.md, "In a bucket").

``PREFIX/RUN/`` holds the run's files under their own names, except:

- ``metrics.jsonl`` (appended to locally) becomes segments that never change once written,
  ``metrics/BEGIN-END.jsonl``: bytes [BEGIN, END) of the log, whole lines only;
- ``head.json``, rewritten by the writer after the objects it names are up: every file with its
  size and MD5, the segments in order, a version, the writer's heartbeat and whether it closed.
  A reader needs only the head to know what changed (one small request per poll);
- ``writer.lease``: made with a conditional write (create only if absent) by the one writer;
  refreshed with the heartbeat; a dead writer's lease goes stale and may be taken over.

run.lock, trainer.pid and train.log stay local (a lock, a process id, a console log).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from epochscope.layout import CHECKPOINTS, FILE_NAMES, FOLDERS, LOCK, METRICS, PID, TRAIN_LOG
from epochscope.storage.state import STALE_SECONDS

HEAD = "head.json"
LEASE = "writer.lease"
SEGMENTS = "metrics"
FORMAT = 1
HEAD_CAP = 16 << 20  # a head of a run with 10,000 epoch files is about 1 MB
LEASE_CAP = 64 << 10
#: a writer refreshes its heartbeat this often; a reader calls it dead after STALE_SECONDS
BEAT_SECONDS = 120.0

LOCAL_ONLY = frozenset({LOCK, PID, TRAIN_LOG, METRICS})
_EPOCH_NAME = re.compile(r"epoch-\d{4,}(?:\.[A-Za-z0-9]+)+")
_SEGMENT = re.compile(r"(\d{12})-(\d{12})\.jsonl")


def stored(rel: str) -> bool:
    """Whether ``rel`` (a '/'-path inside a run) is a run file a bucket holds: a top-level
    file of the format or an epoch file of one of its folders. Anything else, from a hostile
    head included (``../x``, absolute paths), is never read or written."""
    parts = rel.split("/")
    if len(parts) == 1:
        return parts[0] in FILE_NAMES and parts[0] not in LOCAL_ONLY
    return len(parts) == 2 and parts[0] in FOLDERS and bool(_EPOCH_NAME.fullmatch(parts[1]))


def is_checkpoint(rel: str) -> bool:
    return rel.startswith(f"{CHECKPOINTS}/")


def segment_name(begin: int, end: int) -> str:
    return f"{SEGMENTS}/{begin:012d}-{end:012d}.jsonl"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: str | os.PathLike[str]) -> str:
    """:func:`md5` of a file read 1 MiB at a time (a model or checkpoint is not loaded whole)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class Head:
    """A run's head.json (see the module docstring)."""

    version: int = 0
    writer: str = ""
    heartbeat: float = 0.0
    closed: bool = False
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    metrics: list[tuple[int, int]] = field(default_factory=list)

    @property
    def metrics_end(self) -> int:
        return self.metrics[-1][1] if self.metrics else 0

    def live(self, now: float | None = None) -> bool:
        """Whether a writer holds the run: not closed, heartbeat fresh."""
        return not self.closed and (now or time.time()) - self.heartbeat < STALE_SECONDS

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT, "version": self.version, "writer": self.writer,
            "heartbeat": round(self.heartbeat, 3), "closed": self.closed,
            "files": {k: list(v) for k, v in sorted(self.files.items())},
            "metrics": [list(s) for s in self.metrics],
        }  # fmt: skip
        return (json.dumps(body, indent=1) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> Head:
        """A head from a bucket: ValueError naming ``where`` for anything malformed; files
        that are not run files are dropped (never fetched)."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{where}: not JSON") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError(f"{where}: not an Epochscope head (format {FORMAT})")
        files: dict[str, tuple[int, str]] = {}
        raw_files = body.get("files")
        if not isinstance(raw_files, dict):
            raise ValueError(f"{where}: files is not a mapping")
        for rel, entry in raw_files.items():
            ok = isinstance(entry, list) and len(entry) == 2 and _size(entry[0])
            if ok and isinstance(entry[1], str) and stored(rel):
                files[rel] = (entry[0], entry[1])
        segments: list[tuple[int, int]] = []
        end = 0
        for entry in body.get("metrics") or []:
            ok = isinstance(entry, list) and len(entry) == 2 and all(map(_size, entry))
            if not ok or entry[0] > end or entry[1] <= entry[0]:
                raise ValueError(f"{where}: metrics segments out of order")
            segments.append((entry[0], entry[1]))
            end = entry[1]
        version, beat = body.get("version"), body.get("heartbeat")
        if not _size(version) or not isinstance(beat, int | float):
            raise ValueError(f"{where}: version or heartbeat missing")
        return cls(
            version=version, writer=str(body.get("writer", ""))[:200], heartbeat=float(beat),
            closed=body.get("closed") is True, files=files, metrics=segments,
        )  # fmt: skip


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 50


def parse_segment(name: str) -> tuple[int, int] | None:
    match = _SEGMENT.fullmatch(name)
    return (int(match.group(1)), int(match.group(2))) if match else None
