"""One epoch's ONNX model as the classifier reads it: an identity, a size and bounded bytes, so
the dashboard loads a model without opening or stat'ing a run's files itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from epochscope.layout import model_file, read_regular


@dataclass(frozen=True)
class ModelFile:
    """One epoch's ONNX model as the classifier sees it: an identity that changes with the file
    (``key``), its size, and its bytes read by the bounded reader."""

    name: str
    key: tuple[str, int, int]
    size: int
    _path: Path
    _within: Path

    @classmethod
    def of(cls, run_dir: str | os.PathLike[str], epoch: int) -> ModelFile:
        """The model of ``epoch`` in ``run_dir``; OSError when there is none."""
        path = model_file(run_dir, epoch)
        st = path.stat()
        return cls(
            path.name, (str(path), st.st_mtime_ns, st.st_size), st.st_size, path, Path(run_dir)
        )

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> ModelFile:
        """A model file outside any run (a notebook's, a test's)."""
        p = Path(path)
        st = p.stat()
        return cls(p.name, (str(p), st.st_mtime_ns, st.st_size), st.st_size, p, p.parent)

    def read(self, limit: int) -> bytes:
        """The file's bytes: a regular file inside its run, at most ``limit`` bytes."""
        return read_regular(self._path, limit, within=self._within)
