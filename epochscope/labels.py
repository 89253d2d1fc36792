"""Label issues and calibration of a run, as :class:`epochscope.Run` gives them.

What the dashboard's views and the HTTP API send is built here from a Run's stored arrays
(:func:`epochscope.reader.load_label_stats`, memoised by the Run) with numpy and plain lists,
so a JSON reply needs no pandas; :func:`issues_frame` and :func:`calibration_frames` are the
notebook forms (pandas imported when called). Every result is kept in the Run's memo, so the
worker's one bound on its Runs covers it.

An epoch whose predictions file was written before these arrays existed raises
:class:`LabelStatsMissing` (a LookupError whose message carries
:data:`epochscope.reader.LABEL_STATS_MISSING`), never a traceback from deeper down.
"""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from epochscope.analysis import calibration as cal
from epochscope.analysis.bands import UNKNOWN
from epochscope.analysis.label_issues import (
    METHODS,
    STABILITY_EPOCHS,
    EpochScores,
    issue_rows,
    label_issues,
)
from epochscope.reader import LABEL_STATS_MISSING

if TYPE_CHECKING:
    from epochscope.run import Run

#: the reliability bins' columns, and those of the per-band and per-class tables
BIN_COLUMNS = ("lower", "upper", "accuracy", "confidence", "count")
GROUP_COLUMNS = ("count", "accuracy", "confidence", "ece", "ece_scaled")


class LabelStatsMissing(LookupError):
    """An epoch's predictions file has no label arrays: it was written before they existed."""


def required_stats(run: Run, epoch: int) -> dict[str, np.ndarray]:
    """The label arrays of an epoch; :class:`LabelStatsMissing` when its file has none."""
    stats = run.label_stats(epoch)
    if stats is None:
        raise LabelStatsMissing(f"run {run.name!r} epoch {epoch}: {LABEL_STATS_MISSING}")
    return stats


def window(run: Run, epoch: int, size: int = STABILITY_EPOCHS) -> list[int]:
    """The last ``size`` epochs with label arrays up to ``epoch``, ascending: walked back from
    ``epoch`` so that only the files needed are read (as ``stability_window`` chooses them)."""
    out: list[int] = []
    for e in reversed([x for x in run.epochs if x <= epoch]):
        if run.label_stats(e) is not None:
            out.append(e)
            if len(out) >= size:
                break
    return out[::-1]


def ranking(run: Run, epoch: int, method: str = "self_confidence") -> dict[str, np.ndarray]:
    """Every validation image ranked, most likely mislabeled first (``label_issues``' arrays),
    averaged over the stability window of the last 3 epochs up to ``epoch``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")

    def build() -> dict[str, np.ndarray]:
        required_stats(run, epoch)
        scores = []
        for e in window(run, epoch):
            top5, prob = run.predictions(e)
            s = run.label_stats(e)
            scores.append(EpochScores(top5, prob, s["p_label"], s["margin"]))
        return label_issues(scores, run.labels, run.num_classes, method=method)

    return run.memo(("label_issues", epoch, method), build)


def _finite_or_none(values: list[float]) -> list[float | None]:
    # NaN scores (a diverged model's non-finite logits) are null in JSON, not an invalid NaN
    return [v if math.isfinite(v) else None for v in values]


def _mask(issues: dict[str, np.ndarray], label: int | None, suggested: int | None) -> np.ndarray:
    mask = np.ones(len(issues["index"]), dtype=bool)
    if label is not None:
        mask &= issues["label"] == label
    if suggested is not None:
        mask &= issues["suggested"] == suggested
    return mask


def issue_count(
    run: Run,
    epoch: int,
    method: str = "self_confidence",
    label: int | None = None,
    suggested: int | None = None,
) -> int:
    """How many images the ranking has (given ``label`` and/or ``suggested`` only)."""
    return int(_mask(ranking(run, epoch, method), label, suggested).sum())


def issue_columns(
    run: Run,
    epoch: int | None = None,
    *,
    limit: int | None = None,
    method: str = "self_confidence",
    label: int | None = None,
    suggested: int | None = None,
) -> dict[str, list]:
    """The ranking as plain columns (:data:`COLUMNS`, then ``label_name``, ``suggested_name``,
    ``flagged``, ``flagged_epochs``), optionally only images given class ``label`` and/or
    suggested ``suggested``; the first ``limit`` rows."""
    e = run.epoch(epoch)
    issues = ranking(run, e, method)
    mask = _mask(issues, label, suggested)
    rows = np.flatnonzero(mask) if label is not None or suggested is not None else None
    if limit is not None:
        rows = (rows if rows is not None else np.arange(len(mask)))[: max(0, int(limit))]
    chosen = issues if rows is None else {k: v[rows] for k, v in issues.items()}
    cols = issue_rows(chosen, run.paths, run.names)
    cols["score"] = _finite_or_none(cols["score"])
    return cols


def records(columns: dict[str, list]) -> list[dict[str, Any]]:
    """Columns as a list of row objects (a JSON reply's form)."""
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def csv_text(columns: dict[str, list], header: bool = True) -> str:
    """Columns as CSV: a header of their names (unless ``header`` is False), one row each
    (the form a relabelling tool and ``trainer train --exclude`` read)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    if header:
        out.writerow(list(columns))
    out.writerows(zip(*columns.values(), strict=True))
    return buf.getvalue()


def issues_frame(columns: dict[str, list]) -> Any:
    import pandas as pd

    return pd.DataFrame(columns)


# --- calibration ----------------------------------------------------------------------------------
def band_ids(run: Run) -> tuple[list[str], np.ndarray]:
    """(band names, sorted; band index of each class, -1 outside every band)."""
    names = sorted({b for b in run.bands if b != UNKNOWN})
    index = {b: i for i, b in enumerate(names)}
    return names, np.array([index.get(b, -1) for b in run.bands], dtype=np.int64)


def report(run: Run, epoch: int) -> dict[str, Any]:
    """``analysis.calibration``'s result of an epoch with per-class groups, and per-band
    (``band_names``, ``bands``, ``bands_scaled``) when the run has bands."""

    def build() -> dict[str, Any]:
        stats = required_stats(run, epoch)
        top1 = run.predictions(epoch)[0][:, 0]
        args = (top1, run.labels, stats["confidence"], stats["confidence_scaled"],
                float(stats["temperature"]))  # fmt: skip
        out = cal.calibration(*args, groups=run.labels, num_groups=run.num_classes)
        names, per_class = band_ids(run)
        out["band_names"] = names
        if names:
            by_band = cal.calibration(*args, groups=per_class[run.labels], num_groups=len(names))
            out["bands"], out["bands_scaled"] = by_band["groups"], by_band["groups_scaled"]
        return out

    return run.memo(("calibration", epoch), build)


def _bins(bins: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: bins[k].tolist() for k in BIN_COLUMNS}


def _groups(plain: dict[str, np.ndarray], scaled: dict[str, np.ndarray]) -> dict[str, list]:
    out = {k: plain[k].tolist() for k in GROUP_COLUMNS[:-1]}
    out["ece_scaled"] = scaled["ece"].tolist()
    return out


def _number(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def calibration_columns(run: Run, epoch: int | None = None) -> dict[str, Any]:
    """One epoch's calibration as plain values: ``epoch``, ``ece``, ``ece_scaled``,
    ``temperature`` (None when nothing could be fitted), ``accuracy``, ``count`` (images
    counted), and as columns ``bins``/``bins_scaled`` (:data:`BIN_COLUMNS`), ``by_band``
    (``band`` + :data:`GROUP_COLUMNS`; empty without bands) and ``by_class`` (``index``,
    ``name``, ``band`` + :data:`GROUP_COLUMNS`)."""
    e = run.epoch(epoch)
    r = report(run, e)
    by_class = {"index": list(range(run.num_classes)), "name": list(run.names),
                "band": [b if b != UNKNOWN else "" for b in run.bands],
                **_groups(r["groups"], r["groups_scaled"])}  # fmt: skip
    by_band: dict[str, list] = {"band": list(r["band_names"])}
    if r["band_names"]:
        by_band.update(_groups(r["bands"], r["bands_scaled"]))
    else:
        by_band.update({k: [] for k in GROUP_COLUMNS})
    return {
        "epoch": e,
        "ece": _number(r["ece"]),
        "ece_scaled": _number(r["ece_scaled"]),
        "temperature": _number(r["temperature"]),
        "accuracy": r["accuracy"],
        "count": r["count"],
        "bins": _bins(r["bins"]),
        "bins_scaled": _bins(r["bins_scaled"]),
        "by_band": by_band,
        "by_class": by_class,
    }


TABLES = ("bins", "bins_scaled", "by_band", "by_class")


def calibration_json(columns: dict[str, Any]) -> dict[str, Any]:
    """:func:`calibration_columns` with each table as a list of row objects."""
    return {k: records(v) if k in TABLES else v for k, v in columns.items()}


def calibration_frames(columns: dict[str, Any]) -> dict[str, Any]:
    """:func:`calibration_columns` with each table as a pandas DataFrame."""
    import pandas as pd

    return {k: pd.DataFrame(v) if k in TABLES else v for k, v in columns.items()}


def _plain(
    run: Run, epoch: int, stats: dict[str, np.ndarray], rows: np.ndarray | None = None
) -> dict[str, Any]:
    """``analysis.calibration`` without groups, over ``rows`` (a mask; all when None)."""
    top1 = run.predictions(epoch)[0][:, 0]
    pick = slice(None) if rows is None else rows
    conf, scaled = stats["confidence"][pick], stats["confidence_scaled"][pick]
    return cal.calibration(top1[pick], run.labels[pick], conf, scaled, float(stats["temperature"]))


def reliability(
    run: Run, epoch: int, *, band: str | None = None, label: int | None = None
) -> dict[str, Any]:
    """``analysis.calibration`` of an epoch over the images of one band or one class (the
    reliability diagram of a part of the validation set); the whole set without either."""
    r = report(run, epoch)
    if band is None and label is None:
        return r
    key = ("reliability", epoch, band, label)

    def build() -> dict[str, Any]:
        stats = required_stats(run, epoch)
        if label is not None:
            rows = run.labels == label
        else:
            names, per_class = band_ids(run)
            rows = per_class[run.labels] == (names.index(band) if band in names else -2)
        return _plain(run, epoch, stats, rows)

    return run.memo(key, build)


def ece_series(run: Run) -> dict[str, list]:
    """Per epoch with label arrays: ``epoch``, ``ece``, ``ece_scaled`` and ``temperature``
    (the training page's curve). Each file is read once (the Run's memo)."""
    out: dict[str, list] = {"epoch": [], "ece": [], "ece_scaled": [], "temperature": []}
    for e in run.epochs:
        stats = run.label_stats(e)
        if stats is None:
            continue

        def build(e: int = e, stats: dict = stats) -> tuple[float, float, float]:
            r = _plain(run, e, stats)
            return r["ece"], r["ece_scaled"], r["temperature"]

        ece, scaled, t = run.memo(("ece", e), build)
        out["epoch"].append(e)
        out["ece"].append(_number(ece))
        out["ece_scaled"].append(_number(scaled))
        out["temperature"].append(_number(t))
    return out
