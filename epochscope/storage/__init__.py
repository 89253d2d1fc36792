"""Where runs live: a local folder, or a bucket prefix (s3://, az://, gs://) through fsspec.

Only the writer (:class:`epochscope.writer.RunWriter`) and the provider
(:class:`epochscope.Runs`) know about it. A local folder keeps every guarantee it always had
(atomic replace, fsync, flock, append). A bucket gets the same run directory without append,
rename or locks (docs/run-directory.md, "In a bucket"): the writer writes a local staging copy
and :mod:`~epochscope.storage.upload` sends it up off the training thread; the provider reads
a local mirror that :mod:`~epochscope.storage.mirror` keeps up to date with few requests.
"""

from epochscope.storage.location import (
    StorageError,
    cache_dir,
    check_location,
    is_remote,
    local_folder,
    redact,
    staging_folder,
)

__all__ = [
    "StorageError",
    "cache_dir",
    "check_location",
    "is_remote",
    "local_folder",
    "redact",
    "staging_folder",
]
