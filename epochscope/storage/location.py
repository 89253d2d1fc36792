"""Telling a bucket URL from a local folder, and where local copies of bucket runs go.

Imports nothing heavy: the reader and the trainer's argument checks use it on every run.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

#: the schemes Epochscope stores runs under: fsspec's implementation and the extra to install
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# "s3:bucket/runs" or "s3:/bucket/runs": a URL with its slashes lost, never a folder name
_BROKEN_URL = re.compile(r"^(s3a?|az|abfss?|gs|gcs):(?!//)", re.IGNORECASE)
CACHE_ENV = "EPOCHSCOPE_CACHE_DIR"


class StorageError(ValueError):
    """A runs location that cannot be used as given; the message names the fix."""


def scheme_of(text: str | os.PathLike[str]) -> str | None:
    match = _URL.match(os.fspath(text))
    return match.group(1).lower() if match else None


def is_remote(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a bucket (any ``scheme://`` but ``file://``)."""
    scheme = scheme_of(text)
    return scheme is not None and scheme != "file"


def redact(url: str) -> str:
    """``url`` as it may be shown: without user:password@ and without a query (SAS tokens)."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)
    return url.split("?", 1)[0].split("#", 1)[0]


def local_folder(text: str | os.PathLike[str]) -> Path:
    """A local runs folder as a Path; StorageError for what is a URL, or looks like one, so
    ``s3://bucket/runs`` can never become a local folder named ``s3:``."""
    raw = os.fspath(text)
    scheme = scheme_of(raw)
    if scheme == "file":
        return Path(raw[len("file://") :])
    if scheme is not None:
        known = ", ".join(f"{s}://" for s in ("s3", "az", "gs"))
        if scheme in SCHEMES:
            raise StorageError(f"{redact(raw)} is a bucket, not a folder (this path needs one)")
        raise StorageError(f"{redact(raw)}: no storage for {scheme}:// (runs live in {known} "
                           "or a local folder)")  # fmt: skip
    if _BROKEN_URL.match(raw):
        scheme = raw.split(":", 1)[0]
        raise StorageError(
            f"{raw!r} looks like a bucket URL missing its slashes: write "
            f"{scheme}://BUCKET/PREFIX (or ./{raw} for a folder of that name)"
        )
    return Path(raw)


def cache_dir() -> Path:
    """Local copies of bucket runs: $EPOCHSCOPE_CACHE_DIR, else ~/.cache/epochscope."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "epochscope"


def url_key(url: str) -> str:
    """A folder name for one bucket prefix (its shown URL hashed: no secret in a path)."""
    shown = redact(url).rstrip("/")
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", shown.split("://", 1)[-1])[-40:]
    return f"{hashlib.sha256(shown.encode()).hexdigest()[:12]}-{tail}"


def staging_folder(url: str) -> Path:
    """Where a writer keeps the local copy of the runs it writes to bucket prefix ``url``."""
    return cache_dir() / "staging" / url_key(url)


def mirror_folder(url: str) -> Path:
    """Where a reader keeps its local mirror of bucket prefix ``url``."""
    return cache_dir() / "mirror" / url_key(url)


def check_location(text: str | os.PathLike[str]) -> None:
    """StorageError unless ``text`` is a local folder or a bucket URL whose storage library
    is installed (checked before any work starts, so the error comes first, not last)."""
    if not is_remote(text):
        local_folder(text)
        return
    raw = os.fspath(text)
    scheme = scheme_of(raw)
    if scheme not in SCHEMES:
        local_folder(raw)  # raises, naming the schemes there are
    module, extra = SCHEMES[scheme]  # type: ignore[index]
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise StorageError(f"{redact(raw)} needs {module}: pip install 'epochscope[{extra}]'")
