"""One bucket prefix through fsspec: the few operations the upload and the mirror need.

fsspec and its implementations (s3fs, adlfs, gcsfs) find credentials and endpoints where their
SDKs do (environment variables such as AWS_ENDPOINT_URL or AZURE_STORAGE_CONNECTION_STRING,
profiles, instance roles); ``storage_options`` pass anything else. Nothing here writes them
anywhere: a Store shows itself by its redacted URL only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any

from epochscope.storage.location import StorageError, check_location, is_remote, redact


class Store:
    """The objects under one URL prefix, named by paths relative to it (``run/head.json``)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        if not is_remote(url):
            raise StorageError(f"{redact(url)}: not a bucket URL (s3://, az://, gs://)")
        check_location(url)  # an unknown scheme, or its library missing: the fix named
        self.url = url.rstrip("/")
        self.shown = redact(self.url)
        # a filesystem of its own: fsspec's shared instances ignore the environment
        # (AWS_ENDPOINT_URL...) they were made under
        self._options = {"skip_instance_cache": True, **(storage_options or {})}
        self._fs, root = self._connect()
        self._pid = os.getpid()
        self.root = root.rstrip("/")

    def _connect(self) -> tuple[Any, str]:
        import fsspec  # the storage layer's only heavy import, made when a bucket is used

        try:
            return fsspec.core.url_to_fs(self.url, **self._options)
        except (TypeError, ValueError) as e:
            raise StorageError(f"{self.shown}: {type(e).__name__} opening the store") from None

    @property
    def fs(self) -> Any:
        """The fsspec filesystem, made again in a forked child (gunicorn's workers fork from
        the process that probed the bucket): s3fs and adlfs refuse to run their event loop
        in a process other than the one that made it ("This class is not fork-safe")."""
        if self._pid != os.getpid():
            self._fs, _ = self._connect()
            self._pid = os.getpid()
        return self._fs

    def __repr__(self) -> str:
        return f"<epochscope Store {self.shown!r}>"

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def stat(self, rel: str) -> dict[str, Any] | None:
        """Size and ETag of one object, asked of the store (one HEAD request), None if absent."""
        path = self.path(rel)
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        tag = info.get("ETag") or info.get("etag") or info.get("LastModified")
        return {"size": int(info.get("size") or 0), "etag": str(tag)}

    def get(self, rel: str, most: int, size: int | None = None) -> bytes:
        """An object's bytes; ValueError, before downloading, when it is over ``most`` bytes
        (``size`` from a listing or a head saves asking the store for it)."""
        if size is not None and size > most:
            raise ValueError(f"{self.shown}/{rel}: {size} bytes, over the {most}-byte limit")
        # a ranged read: one request, and never more than the limit comes down
        data = self.fs.cat_file(self.path(rel), start=0, end=most + 1)
        if len(data) > most:  # it grew since it was listed
            raise ValueError(f"{self.shown}/{rel}: over the {most}-byte limit")
        return data

    def get_many(self, wanted: list[tuple[str, int]]) -> list[bytes | BaseException]:
        """Objects ``(rel, size)`` fetched together (concurrently where the store's library
        can: s3fs, adlfs), each read no further than one byte past its ``size`` (checked
        against the caps before): bytes, or the exception of that one object."""
        if not wanted:
            return []
        paths = [self.path(rel) for rel, _ in wanted]
        ends = [size + 1 for _, size in wanted]
        try:
            got = self.fs.cat_ranges(paths, [0] * len(paths), ends, on_error="return")
        except (OSError, ValueError) as e:
            return [e] * len(wanted)
        return [g if isinstance(g, bytes | BaseException) else bytes(g) for g in got]

    def put(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(rel), data)

    def put_file(self, rel: str, local: str) -> None:
        self.fs.put_file(local, self.path(rel))

    def create(self, rel: str, data: bytes) -> bool:
        """Write ``rel`` only if it does not exist (a conditional write); False if it did."""
        try:
            with self.fs.open(self.path(rel), "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        return True

    def names(self, rel: str = "") -> list[str]:
        """The names one level under ``rel`` (objects and prefixes), [] when there are none."""
        path = self.path(rel)
        self.fs.invalidate_cache(path)
        try:
            listed = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted({str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed})

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(rel))

    def check_bucket(self) -> None:
        """FileNotFoundError when the bucket (container) itself is not there: a listing of a
        missing bucket looks like an empty one."""
        bucket = self.root.split("/", 1)[0]
        if not self.fs.exists(bucket):
            raise FileNotFoundError(f"no bucket {bucket!r}")


_STORES: OrderedDict[tuple, Store] = OrderedDict()
_STORES_LOCK = threading.Lock()
_CREDENTIAL_ENV = ("AWS_", "AZURE_", "GOOGLE_", "GCS_", "FSSPEC_")


def open_store(url: str, storage_options: dict[str, Any] | None = None) -> Store:
    """A Store of ``url``, shared by the writer, the pull before it and a sync of the same
    process (making a client costs a few hundred ms); a new one when the storage options or
    the credential and endpoint variables of the environment changed."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_CREDENTIAL_ENV)))
    try:
        options = json.dumps(storage_options or {}, sort_keys=True, default=repr)
    except TypeError:
        return Store(url, storage_options)
    key = (url.rstrip("/"), options, hashlib.sha256(repr(env).encode()).hexdigest())
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is not None:
            _STORES.move_to_end(key)
            return store
    store = Store(url, storage_options)
    with _STORES_LOCK:
        _STORES[key] = store
        while len(_STORES) > 16:
            _STORES.popitem(last=False)
    return store
