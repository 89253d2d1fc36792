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
    data = read_regular(path, limit, within)  # LookupError when missing
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
