"""TSV files of the run directory through the csv module, so that any class name round-trips.

Fields with a tab, a quote or a newline are quoted the csv way (``"a ""quoted"" name"``); plain
fields are written as they are, so ordinary files stay readable with ``cut -f``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from epochscope.layout import cap_of, read_regular

#: the largest field a reader accepts (a class name or a relative path), in characters
MAX_FIELD = 1 << 20
#: the largest TSV of another name a reader accepts; a run's own TSVs have their own caps
#: (epochscope.layout.CAPS: ImageNet's val_index.tsv is about 3 MB)
MAX_TSV = 64 << 20


class _Dialect(csv.Dialect):
    delimiter = "\t"
    quotechar = '"'
    doublequote = True
    lineterminator = "\n"  # reading: any newline
    quoting = csv.QUOTE_MINIMAL
    skipinitialspace = False
    strict = True


_SPECIAL = ("\t", '"', "\n", "\r")


def _field(value: Any) -> str:
    text = str(value)
    if any(c in text for c in _SPECIAL):  # csv quoting; csv.reader reads it back exactly
        return '"' + text.replace('"', '""') + '"'
    return text


def tsv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    lines = ["\t".join(map(_field, header))]
    lines += ["\t".join(map(_field, row)) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def read_tsv(
    path: str | os.PathLike[str],
    header: Sequence[str],
    within: str | os.PathLike[str] | None = None,
) -> list[list[str]]:
    """Body rows of a TSV with exactly ``header``; LookupError if missing, ValueError if bad.

    Read through the bounded reader: capped by its kind (classes.tsv, val_index.tsv,
    hierarchy.tsv; MAX_TSV for other names), never a FIFO or a device, and with ``within`` (the
    run directory) never through a link that leads out of it."""
    path = Path(path)
    csv.field_size_limit(MAX_FIELD)
    try:
        limit = cap_of(path)
    except KeyError:
        limit = MAX_TSV
    return _parse(path, read_regular(path, limit, within), header)  # LookupError: missing


def _parse(path: Path, data: bytes, header: Sequence[str]) -> list[list[str]]:
    csv.field_size_limit(MAX_FIELD)
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), dialect=_Dialect))
    except (csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable TSV file: {e}") from None
    if not rows or rows[0] != list(header):
        raise ValueError(f"{path}: expected the header {'<TAB>'.join(header)}")
    body = rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {n}: expected {len(header)} columns, got {len(row)}")
    return body


# --- large plain TSVs (train_index.tsv): numpy over the bytes, strings decoded on demand --------
def parse_tsv(path: Path, data: bytes, header: Sequence[str]) -> list[list[str]]:
    """:func:`read_tsv`'s body from bytes already read."""
    return _parse(path, data, header)


def plain_spans(data: bytes, width: int) -> np.ndarray | None:
    """Byte ranges ``[lines, width, 2]`` (start, end) of every field of a TSV with no quote and
    no carriage return whose every line ends in a newline and holds ``width - 1`` tabs (what
    :func:`tsv_bytes` writes for plain text): its fields are then exactly what csv.reader would
    read. None for any other file, which csv must read. No field may exceed MAX_FIELD bytes."""
    if b'"' in data or b"\r" in data or not data.endswith(b"\n"):
        return None
    raw = np.frombuffer(data, np.uint8)
    at = np.flatnonzero((raw == 9) | (raw == 10))  # every separator, in order
    pattern = np.array([9] * (width - 1) + [10], np.uint8)
    if len(at) % width or not (raw[at].reshape(-1, width) == pattern).all():
        return None
    starts = np.concatenate([[0], at[:-1] + 1])
    if len(at) and int((at - starts).max()) > MAX_FIELD:
        return None  # csv.reader refuses it, with its own message
    return np.stack([starts, at], axis=1).reshape(-1, width, 2)


def span_uints(data: bytes, spans: np.ndarray) -> np.ndarray | None:
    """The fields ``spans`` ``[N, 2]`` as int64 when each is a plain decimal (1 to 18 digits,
    no sign, no leading zero but in "0"); None when one is not (then ``int()`` decides)."""
    if not len(spans):
        return np.zeros(0, np.int64)
    lengths = spans[:, 1] - spans[:, 0]
    most = int(lengths.max())
    if lengths.min() < 1 or most > 18:
        return None
    raw = np.frombuffer(data, np.uint8)
    place = np.arange(most)
    inside = place < lengths[:, None]
    digits = raw[np.minimum(spans[:, :1] + place, len(raw) - 1)].astype(np.int64) - 48
    if ((digits < 0) | (digits > 9))[inside].any() or ((digits[:, 0] == 0) & (lengths > 1)).any():
        return None
    power = 10 ** np.clip(lengths[:, None] - 1 - place, 0, None)
    return (np.where(inside, digits, 0) * power).sum(axis=1)


class SpanStrings(Sequence[str]):
    """A text column of a plain TSV, each field decoded from the file's bytes when asked:
    a 1.28 M-row path column costs two arrays, not a million strings."""

    def __init__(self, data: bytes, spans: np.ndarray) -> None:
        self._data, self._spans = data, spans

    def __len__(self) -> int:
        return len(self._spans)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        start, end = self._spans[i]
        return self._data[start:end].decode("utf-8")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        return len(self._data) + self._spans.nbytes
