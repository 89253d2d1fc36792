"""A least-recently-used cache bounded by bytes, shared by the threads of a worker."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


def size_of(value: Any) -> int:
    """Rough bytes held by a cached value: arrays, frames and containers of them."""
    if hasattr(value, "nbytes") and isinstance(value.nbytes, int):
        return int(value.nbytes)
    if hasattr(value, "memory_usage"):  # pandas DataFrame
        return int(value.memory_usage(index=False, deep=False).sum())
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple | list):
        return sum(size_of(v) for v in value) + 64
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values()) + 64
    if isinstance(value, bytes | str):
        return len(value) + 49  # the object's own header: a million paths are 49 MB more
    return 64


class ByteLRU:
    """Maps keys to computed values; evicts the least recently used above ``max_bytes``.

    The value being inserted is always kept, even when alone it exceeds the bound, so a caller
    never recomputes what it just asked for.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
        # computed outside the lock: two threads may both compute a miss, the last one stays
        value = compute()
        size = size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, old) = self._items.popitem(last=False)
                self._bytes -= old
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def discard(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key ``keep`` refuses."""
        with self._lock:
            for key in [k for k in self._items if not keep(k)]:
                self._bytes -= self._items.pop(key)[1]
