"""``--exclude FILE`` and ``--relabel FILE``: retrain without, or with corrected labels for, the
training images a ranking found (``Run.training_label_issues``, the dashboard's CSV).

A file names training images by ``path`` (relative to the data folder, as train_index.tsv and
the CSV write them) or by ``index`` (a row of train_index.tsv; the same order when the data
folder and ``--val-fraction`` are the same). Two forms:

- a CSV (comma or tab separated) with a header holding ``path`` and/or ``index``, and for
  ``--relabel`` a ``new_label`` column, or ``suggested`` (the ranking's column);
- plain lines: one image per line (``--exclude``), or ``image,label`` (``--relabel``).

A label is a class index, a class folder name (wnid) or a readable class name. Whatever cannot
be matched to exactly one image or class is refused with the line it is on: nothing is guessed.
The excluded images stay in train_index.tsv (their statistics are simply never seen, so a
cleaned run's rows line up with the noisy run's); relabelled ones carry their new label there.
Both are recorded in the run's label_edits.tsv.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from trainer.datasets import DataError, DatasetIndex

#: the most bytes an edit file may have (a 1.28 M-row ranking CSV is about 150 MB)
MAX_EDIT_FILE = 512 << 20


@dataclass(frozen=True)
class LabelEdits:
    """What a run changed about its training set: excluded rows, and rows -> (old, new)."""

    excluded: tuple[int, ...] = ()
    relabelled: tuple[tuple[int, int, int], ...] = ()  # (row, old label, new label)
    # AUM's threshold samples (--threshold-samples): (row, given label), trained as class C
    threshold: tuple[tuple[int, int], ...] = ()
    fake_class: int = -1  # C, the number of real classes

    def __bool__(self) -> bool:
        return bool(self.excluded or self.relabelled or self.threshold)

    def rows(self) -> list[list[object]]:
        """label_edits.tsv's body: ``row``, ``edit`` (exclude, relabel, threshold), ``label``,
        ``from``."""
        out: list[list[object]] = [[r, "exclude", "", ""] for r in self.excluded]
        out += [[r, "relabel", new, old] for r, old, new in self.relabelled]
        out += [[r, "threshold", self.fake_class, old] for r, old in self.threshold]
        return sorted(out, key=lambda row: int(row[0]))  # type: ignore[call-overload]

    def describe(self) -> str:
        parts = []
        if self.excluded:
            parts.append(f"{len(self.excluded):,} training images excluded")
        if self.relabelled:
            parts.append(f"{len(self.relabelled):,} relabelled")
        if self.threshold:
            parts.append(f"{len(self.threshold):,} threshold samples (an extra class)")
        return ", ".join(parts)


def _lines(path: Path) -> list[list[str]]:
    try:
        size = path.stat().st_size
        if size > MAX_EDIT_FILE:
            raise DataError(f"{path} is {size:,} bytes, more than an edit file may be")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return [r for r in rows if any(cell.strip() for cell in r)]


class _Matcher:
    """Training images and classes of ``index``, by path, row and name."""

    def __init__(self, index: DatasetIndex, where: Path) -> None:
        self.index, self.where = index, where
        self.by_path = {p: i for i, (p, _) in enumerate(index.train)}
        self.classes: dict[str, set[int]] = {}
        for i, (wnid, name) in enumerate(zip(index.classes, index.names, strict=True)):
            for key in (wnid, name):
                self.classes.setdefault(key, set()).add(i)

    def fail(self, line: int, message: str) -> DataError:
        return DataError(f"{self.where} line {line}: {message}")

    def image(self, line: int, path: str | None, row: str | None) -> int:
        n = len(self.index.train)
        found = None
        if path is not None and path.strip():
            found = self.by_path.get(path.strip().removeprefix("./"))
            if found is None:
                raise self.fail(line, f"{path.strip()!r} is no training image of this data")
        if row is not None and row.strip():
            try:
                number = int(row)
            except ValueError:
                raise self.fail(line, f"index {row.strip()!r} is not a whole number") from None
            if not 0 <= number < n:
                raise self.fail(line, f"index {number} is outside 0..{n - 1}")
            if found is not None and found != number:
                raise self.fail(
                    line,
                    f"index {number} is {self.index.train[number][0]!r} here, but the file "
                    f"says {path!r}: it was made from another training set (other data or "
                    "--val-fraction); keep only its path column",
                )
            found = number
        if found is None:
            raise self.fail(line, "names no image (an empty path and index)")
        return found

    def label(self, line: int, value: str) -> int:
        text = value.strip()
        named = self.classes.get(text, set())
        number = int(text) if text.isdigit() and int(text) < len(self.index.classes) else None
        choices = named | ({number} if number is not None else set())
        if len(choices) != 1:
            what = "matches no class" if not choices else "matches several classes"
            raise self.fail(line, f"label {text!r} {what} (a class index, folder name or name)")
        return choices.pop()


def _table(rows: list[list[str]]) -> tuple[dict[str, int] | None, list[list[str]]]:
    """(column positions, body) of a CSV with a header naming path or index; (None, rows)
    for plain lines."""
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "path" in header or "index" in header:
        return {name: header.index(name) for name in header}, rows[1:]
    return None, rows


def _cell(row: list[str], columns: dict[str, int], name: str) -> str | None:
    at = columns.get(name)
    return row[at] if at is not None and at < len(row) else None


def read_exclusions(path: Path, index: DatasetIndex) -> list[int]:
    """The training rows ``path`` names (sorted, each once)."""
    match, (columns, body) = _Matcher(index, path), _table(_lines(path))
    start = 2 if columns is not None else 1
    out = set()
    for line, row in enumerate(body, start):
        if columns is None:
            entry = row[0].strip()
            is_row = entry.isdigit() and entry not in match.by_path
            out.add(match.image(line, None if is_row else entry, entry if is_row else None))
        else:
            out.add(match.image(line, _cell(row, columns, "path"), _cell(row, columns, "index")))
    return sorted(out)


def read_relabels(path: Path, index: DatasetIndex) -> dict[int, int]:
    """Training row -> new label, from ``path``; one row named twice with two labels is refused."""
    match, (columns, body) = _Matcher(index, path), _table(_lines(path))
    start = 2 if columns is not None else 1
    if columns is not None and not ({"new_label", "suggested"} & set(columns)):
        raise DataError(f"{path}: a relabel CSV needs a new_label (or suggested) column")
    out: dict[int, int] = {}
    for line, row in enumerate(body, start):
        if columns is None:
            if len(row) != 2:
                raise match.fail(line, "expected 'image,label' (a path or index, then a class)")
            entry = row[0].strip()
            is_row = entry.isdigit() and entry not in match.by_path
            image = match.image(line, None if is_row else entry, entry if is_row else None)
            label = match.label(line, row[1])
        else:
            image = match.image(line, _cell(row, columns, "path"), _cell(row, columns, "index"))
            value = _cell(row, columns, "new_label")
            value = value if value is not None else _cell(row, columns, "suggested")
            label = match.label(line, value or "")
        if out.get(image, label) != label:
            raise match.fail(line, f"image {index.train[image][0]!r} is given two new labels")
        out[image] = label
    return out


def apply(
    index: DatasetIndex, exclude: str | None, relabel: str | None
) -> tuple[DatasetIndex, LabelEdits]:
    """``index`` with the relabelled training labels and the excluded rows noted (its
    ``excluded``), and what changed. An image both excluded and relabelled is refused."""
    if not exclude and not relabel:
        return index, LabelEdits()
    excluded = read_exclusions(Path(exclude), index) if exclude else []
    new = read_relabels(Path(relabel), index) if relabel else {}
    both = sorted(set(excluded) & set(new))
    if both:
        raise DataError(
            f"{len(both)} training image(s) are both excluded and relabelled, e.g. "
            f"{index.train[both[0]][0]!r}: keep each in one file"
        )
    if len(excluded) >= len(index.train):
        raise DataError(f"{exclude} excludes every training image")
    train = list(index.train)
    changed = []
    for row, label in sorted(new.items()):
        path, old = train[row]
        if old != label:
            train[row] = (path, label)
            changed.append((row, old, label))
    edits = LabelEdits(tuple(excluded), tuple(changed))
    return replace(index, train=train, excluded=tuple(excluded)), edits


def threshold_samples(
    index: DatasetIndex, edits: LabelEdits, fraction: float | None, seed: int
) -> tuple[DatasetIndex, LabelEdits]:
    """AUM's threshold samples (Pleiss et al. 2020): ``fraction`` of the kept training rows,
    chosen by ``seed``, train with label C (an extra, fake class); their AUM is what a wrong
    label looks like, which sets the ranking's cut-off. Returns the index to train from (those
    rows labelled C) and ``edits`` with them. The run's train_index.tsv keeps their labels."""
    if not fraction:
        return index, edits
    from trainer.datasets import kept_rows

    kept = kept_rows(index)
    count = round(fraction * len(kept))
    if not 0 < count < len(kept):
        raise DataError(
            f"--threshold-samples {fraction:g} of {len(kept):,} training images is {count}: "
            "choose a share that leaves some of each (the paper's: 1 / (classes + 1))"
        )
    chosen = np.sort(np.random.default_rng(seed).choice(kept, count, replace=False))
    fake = len(index.classes)
    train = list(index.train)
    for r in chosen.tolist():
        train[r] = (train[r][0], fake)
    marked = tuple((r, index.train[r][1]) for r in chosen.tolist())
    return replace(index, train=train), replace(edits, threshold=marked, fake_class=fake)
