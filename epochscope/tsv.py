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

from epochscope.layout import read_regular

#: the largest field a reader accepts (a class name or a relative path), in characters
MAX_FIELD = 1 << 20
#: the largest TSV a reader accepts (ImageNet's val_index.tsv is about 3 MB)
MAX_TSV = 256 << 20


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


def read_tsv(path: str | os.PathLike[str], header: Sequence[str]) -> list[list[str]]:
    """Body rows of a TSV with exactly ``header``; LookupError if missing, ValueError if bad."""
    path = Path(path)
    csv.field_size_limit(MAX_FIELD)
    data = read_regular(path, MAX_TSV)  # LookupError when missing; not a FIFO or a device
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
