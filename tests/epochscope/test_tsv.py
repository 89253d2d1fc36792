"""The index TSVs' two readers agree: numpy over the bytes (a plain file: train_index.tsv's
1.28 M rows in ~0.2 s) and csv with int() (anything else). Each file below is read through
``read_train_index`` and through csv alone; labels, paths and refusals must match."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from epochscope import tsv
from epochscope.reader import read_train_index

HEADER = b"row\tlabel\tpath\n"
FILES = {
    "plain": HEADER + b"0\t3\ta/0.png\n1\t0\tb/1.png\n2\t12\tc/\xc3\xa9t\xc3\xa9.png\n",
    "long numbers": HEADER + b"0\t123456789012345678\tx\n",
    "leading zero": HEADER + b"0\t07\tx\n",
    "quoted path": HEADER + b'0\t1\t"a\tb.png"\n',
    "crlf": HEADER.replace(b"\n", b"\r\n") + b"0\t1\tx\r\n",
    "no final newline": HEADER + b"0\t1\tx",
    "negative label": HEADER + b"0\t-1\tx\n",
    "rows out of order": HEADER + b"1\t1\tx\n0\t1\ty\n",
    "empty field": HEADER + b"0\t\tx\n",
    "plus sign": HEADER + b"0\t+1\tx\n",
    "four columns": HEADER + b"0\t1\tx\textra\n",
    "header only": HEADER,
}


def _by_csv(data: bytes) -> tuple[list[int], list[str]] | str:
    """What csv and int() make of the file, or 'refused'."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter="\t"))
    if rows[0] != ["row", "label", "path"] or any(len(r) != 3 for r in rows[1:]):
        return "refused"
    if [r[0] for r in rows[1:]] != [str(i) for i in range(len(rows) - 1)]:
        return "refused"
    try:
        return [int(r[1]) for r in rows[1:]], [r[2] for r in rows[1:]]
    except ValueError:
        return "refused"


@pytest.mark.parametrize("name", list(FILES))
def test_the_fast_reader_reads_what_csv_reads(name: str, tmp_path: Path) -> None:
    data = FILES[name]
    (tmp_path / "train_index.tsv").write_bytes(data)
    want = _by_csv(data)
    try:
        labels, paths = read_train_index(tmp_path)
    except ValueError:
        assert want == "refused", name
        return
    assert want != "refused", name
    assert labels.tolist() == want[0] and list(paths) == want[1]


def test_the_fast_path_is_taken_only_for_plain_files() -> None:
    assert tsv.plain_spans(FILES["plain"], 3) is not None
    for name in ("quoted path", "crlf", "no final newline", "four columns"):
        assert tsv.plain_spans(FILES[name], 3) is None, name
    spans = tsv.plain_spans(FILES["plain"], 3)
    assert tsv.span_uints(FILES["plain"], spans[1:, 1]).tolist() == [3, 0, 12]
    for name in ("leading zero", "negative label", "empty field", "plus sign"):
        data = FILES[name]
        assert tsv.span_uints(data, tsv.plain_spans(data, 3)[1:, 1]) is None, name
    big = np.array([[0, 19]])
    assert tsv.span_uints(b"1" * 19, big) is None  # past int64's digits: int() decides
