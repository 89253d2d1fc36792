"""A prepared image store: a whole dataset pre-resized into a few large files (FFCV's idea).

``python -m trainer prepare-data SRC OUT --max-side N`` writes ``OUT/``:

- ``images.bin``: every image's JPEG bytes back to back (longer side at most N; a JPEG that
  already fits is copied byte for byte, anything else is re-encoded once);
- ``offsets.npy``: int64 [count + 1], image i is ``images.bin[offsets[i]:offsets[i + 1]]``;
- ``labels.npy``: int32 [count]; ``paths.txt``: each image's path relative to SRC, one a line;
- ``store.json``: format, version, classes and names, the train/val split (train first), the
  source folder and layout, what was skipped.

Reading one image is a slice of one memory-mapped file instead of an open/read/close of a
large JPEG, and it decodes at most N pixels a side. The store is written into a temporary
folder beside OUT and renamed into place, so a reader never sees half a store. Numpy and Pillow
only (no torch): the MXNet engine can read it too.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from epochscope import preprocess as pre
from trainer.datasets import IMAGE_ERRORS, DataError, DatasetIndex, discover

FORMAT = "epochscope-image-store"
VERSION = 1
META = "store.json"
FILES = ("images.bin", "offsets.npy", "labels.npy", "paths.txt", META)


def is_store(path: str | Path) -> bool:
    meta = Path(path) / META
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# --- writing ------------------------------------------------------------------------------------
def encode(path: Path, max_side: int, quality: int = 90) -> bytes:
    """One image as JPEG bytes with its longer side at most ``max_side``: the file itself when
    it is an RGB or grey JPEG that fits, else decoded (draft scale, EXIF upright, RGB), shrunk
    and encoded once."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        fits = max(im.size) <= max_side
        orientation = im.getexif().get(0x0112, 1) if im.format == "JPEG" else 1
        if fits and im.format == "JPEG" and im.mode in ("RGB", "L") and orientation == 1:
            im.verify()  # a truncated file fails here, not hours into training
            return data
    with Image.open(io.BytesIO(data)) as im:
        pre.apply_draft(im, max_side)
        im.load()
        img = pre.to_rgb(pre.upright(im))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _encode_job(job: tuple[str, int, int]) -> bytes | None:
    path, max_side, quality = job
    try:
        return encode(Path(path), max_side, quality)
    except IMAGE_ERRORS:
        return None


def write_store(
    src: str | Path,
    out: str | Path,
    *,
    max_side: int,
    quality: int = 90,
    workers: int | None = None,
    val_fraction: float = 0.1,
    force: bool = False,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Write the store of ``src`` (any layout ``discover`` reads) to ``out``; return its meta."""
    if max_side < 8:
        raise DataError(f"--max-side must be at least 8, got {max_side}")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be in 1..100, got {quality}")
    root, out = Path(src).expanduser().resolve(), Path(out).expanduser().resolve()
    if out == root or root in out.parents:
        raise DataError(f"{out} is inside the source folder {root}; choose another OUT")
    if out.exists() and not force:
        raise DataError(f"{out} already exists; pass --force to replace it")
    index = discover(root, val_fraction)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    samples = [(s, "train") for s in index.train] + [(s, "val") for s in index.val]
    jobs = [(str(index.root / rel), max_side, quality) for (rel, _), _ in samples]
    offsets, labels, paths, skipped = [0], [], [], []
    counts = {"train": 0, "val": 0}
    try:
        with open(tmp / "images.bin", "wb") as f:
            for ((rel, label), split), blob in zip(samples, _map(jobs, workers, progress),
                                                    strict=True):  # fmt: skip
                if blob is None:
                    skipped.append(rel)
                    continue
                f.write(blob)
                offsets.append(offsets[-1] + len(blob))
                labels.append(label)
                paths.append(rel)
                counts[split] += 1
            f.flush()
            os.fsync(f.fileno())
        if counts["train"] == 0 or counts["val"] == 0:
            raise DataError(f"no readable {'training' if not counts['train'] else 'validation'} "
                            f"images in {index.root}")  # fmt: skip
        np.save(tmp / "offsets.npy", np.asarray(offsets, np.int64))
        np.save(tmp / "labels.npy", np.asarray(labels, np.int32))
        if any("\n" in p or "\r" in p for p in paths):
            raise DataError("an image path holds a line break; rename it before preparing")
        (tmp / "paths.txt").write_text("".join(p + "\n" for p in paths), encoding="utf-8")
        meta = {
            "format": FORMAT, "version": VERSION, "encoding": "jpeg", "max_side": max_side,
            "quality": quality, "source": str(index.root), "layout": index.layout,
            "classes": index.classes, "names": index.names, "count": len(labels),
            "splits": {"train": [0, counts["train"]],
                       "val": [counts["train"], counts["train"] + counts["val"]]},
            "bytes": offsets[-1], "skipped": skipped,
        }  # fmt: skip
        (tmp / META).write_text(json.dumps(meta, indent=1))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _map(jobs: list, workers: int | None, progress) -> Iterable[bytes | None]:
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1:
        results: Iterable[bytes | None] = map(_encode_job, jobs)
        return progress(results, len(jobs)) if progress else results
    import multiprocessing

    def run() -> Iterable[bytes | None]:
        with multiprocessing.Pool(workers) as pool:
            yield from pool.imap(_encode_job, jobs, chunksize=32)  # in order: offsets follow

    return progress(run(), len(jobs)) if progress else run()


def _swap_into_place(tmp: Path, out: Path) -> None:
    """``tmp`` becomes ``out`` in one rename; an old store there is removed only after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- reading ------------------------------------------------------------------------------------
@dataclass
class StoreIndex(DatasetIndex):
    """A DatasetIndex whose images live in a store: sample i of train is store image i, sample
    i of val is store image ``val_start + i``; paths stay relative to the source folder."""

    store: Path | None = None
    val_start: int = 0


class Store:
    """A prepared store opened for reading; the data file is memory-mapped on first use in each
    process (a loader worker maps its own, nothing large is pickled)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not is_store(self.root):
            raise DataError(f"{self.root} is not a prepared store (no {META} of {FORMAT})")
        try:
            self.meta = json.loads((self.root / META).read_text())
            self.offsets = np.load(self.root / "offsets.npy", allow_pickle=False)
            self.labels = np.load(self.root / "labels.npy", allow_pickle=False)
            self.paths = (self.root / "paths.txt").read_text(encoding="utf-8").splitlines()
            size = (self.root / "images.bin").stat().st_size
        except (OSError, ValueError) as e:
            raise DataError(f"prepared store {self.root} is damaged: {e}") from None
        self._check(size)
        self._data: np.ndarray | None = None

    def _check(self, size: int) -> None:
        n = int(self.meta.get("count", -1))
        o = self.offsets
        problems = [
            (self.meta.get("version") != VERSION, f"version {self.meta.get('version')!r}"),
            (o.ndim != 1 or len(o) != n + 1, "offsets.npy does not match the image count"),
            (len(self.labels) != n or len(self.paths) != n, "labels or paths miss images"),
            (len(o) > 0 and (o[0] != 0 or o[-1] != size), "images.bin has the wrong size"),
            (bool(np.any(np.diff(o) <= 0)), "offsets.npy is not increasing"),
            (len(self.labels) > 0 and (self.labels.min() < 0
             or self.labels.max() >= len(self.meta.get("classes", []))), "labels out of range"),
        ]  # fmt: skip
        for bad, what in problems:
            if bad:
                raise DataError(f"prepared store {self.root} is damaged: {what}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # workers map the file themselves

    def read(self, i: int) -> bytes:
        if self._data is None:
            self._data = np.memmap(self.root / "images.bin", dtype=np.uint8, mode="r")
        return self._data[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def index(self) -> StoreIndex:
        m = self.meta
        t0, t1 = m["splits"]["train"]
        v0, v1 = m["splits"]["val"]
        samples = [(p, int(y)) for p, y in zip(self.paths, self.labels.tolist(), strict=True)]
        return StoreIndex(
            root=Path(m["source"]), layout=m.get("layout", "prepared"), classes=m["classes"],
            names=m["names"], train=samples[t0:t1], val=samples[v0:v1], store=self.root,
            val_start=v0,
        )  # fmt: skip
