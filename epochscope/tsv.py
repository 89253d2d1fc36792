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
    separator = raw == 9
    separator |= raw == 10
    at = np.flatnonzero(separator).reshape(-1, width) if separator.sum() % width == 0 else None
    if at is None or not (raw[at] == np.array([9] * (width - 1) + [10], np.uint8)).all():
        return None
    spans = np.empty((*at.shape, 2), np.int64)
    spans[..., 1] = at
    spans[:, 1:, 0] = at[:, :-1] + 1  # a field starts after the tab before it
    spans[1:, 0, 0] = at[:-1, -1] + 1  # a line after the newline before it
    spans[:1, 0, 0] = 0
    if len(at) and int((spans[..., 1] - spans[..., 0]).max()) > MAX_FIELD:
        return None  # csv.reader refuses it, with its own message
    return spans


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
    first = spans[:, 0]
    value = np.zeros(len(spans), np.int64)
    for place in range(most):  # Horner's rule, one digit column at a time: N-long arrays only
        inside = place < lengths
        digit = raw[np.minimum(first + place, len(raw) - 1)].astype(np.int64) - 48
        if ((digit < 0) | (digit > 9))[inside].any():
            return None
        if place == 0 and ((digit == 0) & (lengths > 1)).any():
            return None  # a leading zero: int() would read it, the file's writer never writes it
        value = np.where(inside, value * 10 + digit, value)
    return value


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
