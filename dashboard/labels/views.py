"""The "Likely mislabeled" view and the reliability diagram: plain functions of what
``epochscope.labels`` computes from a Run (no Dash callbacks, no file access but the
drill-down's allowed thumbnails). The page's callbacks (labels/page.py) call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard.kit.calibration_chart import AFTER, BEFORE
from dashboard.kit.images import file_thumbnail, row_thumbnail, thumbnail_source
from epochscope import labels, train_labels
from epochscope.analysis.bands import UNKNOWN
from epochscope.run import Run

#: images shown with thumbnails (the CSV export holds the whole ranking)
CARDS = 24
#: about the most ranking rows a callback's CSV reply holds under the default 32 MB cap
CSV_REPLY_ROWS = 200_000


@dataclass(frozen=True)
class IssueCard:
    row: int  # val_index row
    path: str
    thumbnail: str | None  # data URI; None when the images are not reachable
    label: str  # the given label's name
    suggested: str  # the best other class's name
    score: float | None
    band: str
    flagged: bool
    detail: str = ""  # a training image's AUM and forgetting


def issue_cards(
    run: Run, columns: dict[str, list], limit: int = CARDS, allowed: list[Path] | None = None
) -> list[IssueCard]:
    """The first ``limit`` rows of a ranking (``labels.issue_columns``) as cards, thumbnails
    from the drill-down's allowed sources only (data root, the run's thumbnails)."""
    root = thumbnail_source(run, allowed).root
    out = []
    for i in range(min(limit, len(columns["index"]))):
        row, rel = int(columns["index"][i]), columns["path"][i]
        band = run.bands[columns["label"][i]]
        out.append(
            IssueCard(
                row=row,
                path=rel,
                thumbnail=row_thumbnail(run, row, root, rel),
                label=columns["label_name"][i],
                suggested=columns["suggested_name"][i],
                score=columns["score"][i],
                band=band if band != UNKNOWN else "",
                flagged=bool(columns["flagged"][i]),
            )
        )
    return out


def issues_view(
    run: Run,
    epoch: int,
    method: str = "self_confidence",
    label: int | None = None,
    suggested: int | None = None,
    allowed: list[Path] | None = None,
) -> tuple[list[IssueCard], str, str]:
    """What the likely-mislabeled view shows: (cards, a summary line, "" or what is missing
    when the epoch's file predates the label arrays)."""
    how = {"method": method, "label": label, "suggested": suggested}
    try:
        cols = labels.issue_columns(run, epoch, limit=CARDS, **how)  # only the rows shown
    except labels.LabelStatsMissing as e:
        return [], "", str(e)
    used = labels.window(run, epoch)
    cards = issue_cards(run, cols, allowed=allowed)
    span = f"epochs {used[0]}-{used[-1]}" if len(used) > 1 else f"epoch {used[-1]}"
    total = labels.issue_count(run, epoch, **how)
    summary = (
        f"{total:,} images ranked by {method.replace('_', '-')} over {span}, "
        f"most likely wrong first; showing {len(cards)} (the CSV has them all)"
    )
    return cards, summary, ""


def train_issue_cards(
    columns: dict[str, list], root: Path | None, limit: int = CARDS
) -> list[IssueCard]:
    """The first ``limit`` rows of the training ranking (``train_labels.issue_columns``) as
    cards, thumbnails from ``root`` (an allowed root) only."""
    out = []
    for i in range(min(limit, len(columns["index"]))):
        aum, forgot = columns["aum"][i], columns["forgetting"][i]
        detail = "" if aum is None else f"AUM {aum:+.2f}"
        detail += f" · forgotten {forgot}x" if forgot else ""
        out.append(
            IssueCard(
                row=int(columns["index"][i]),
                path=columns["path"][i],
                thumbnail=file_thumbnail(root, columns["path"][i]),
                label=columns["label_name"][i],
                suggested=columns["suggested_name"][i] or "-",
                score=columns["score"][i],
                band="",
                flagged=bool(columns["flagged"][i]),  # under the threshold samples' cut-off
                detail=detail,
            )
        )
    return out


def train_issues_view(
    run: Run,
    epoch: int,
    label: int | None = None,
    suggested: int | None = None,
    allowed: list[Path] | None = None,
) -> tuple[list[IssueCard], str, str]:
    """The training tab: (cards, a summary line, "" or what is missing: a run with no
    training statistics), ranked over the epochs up to ``epoch``."""
    how = {"label": label, "suggested": suggested}
    try:
        used = train_labels.epoch_range(run, None, epoch)
        cols = train_labels.issue_columns(run, None, epoch, limit=CARDS, **how)
    except LookupError as e:  # none recorded, or none up to this epoch
        return [], "", str(e)
    cards = train_issue_cards(cols, thumbnail_source(run, allowed).root)
    total = train_labels.issue_count(run, None, epoch, **how)
    span = f"epochs {used[0]}-{used[-1]}" if len(used) > 1 else f"epoch {used[-1]}"
    summary = (
        f"{total:,} training images ranked by the probability the training step gave their "
        f"label, averaged over {span} (of the augmented views it trained on), most likely "
        f"wrong first; showing {len(cards)} (the CSV has them all)"
    )
    if total > CSV_REPLY_ROWS:  # the button's reply is capped (EPOCHSCOPE_MAX_REPLY_MB)
        summary += (
            f"; for all {total:,} rows as CSV: GET /api/v1/label-issues.csv?run={run.name}"
            f"&epoch={epoch}&split=train"
        )
    at = train_labels.cut(run, None, epoch)
    if at is not None:
        summary += (
            f"; flagged: AUM at most {at:+.2f}, the 99th percentile of the run's threshold "
            "samples (images trained with a fake class)"
        )
    return cards, summary, ""


def reliability_view(run: Run, epoch: int, group: str | None = "all") -> go.Figure:
    """The reliability diagram of an epoch over a group option's images (``group_options``),
    or a figure saying what is missing."""
    how = parse_group(group, run.num_classes)
    try:
        report = labels.reliability(run, epoch, **how)
    except labels.LabelStatsMissing as e:
        return message_figure(str(e))
    what = how.get("band") or (run.names[how["label"]] if "label" in how else "all images")
    return reliability_figure(report, f"{run.name} · epoch {epoch} · {what}")


def issues_csv(columns: dict[str, list]) -> str:
    """The ranking as CSV, a header of the column names, one image a row (for a relabelling
    tool: the given label and the suggested one, by index and by name)."""
    return labels.csv_text(columns)


def group_options(run: Run) -> list[dict[str, str]]:
    """What the reliability diagram can be drawn over: the whole set, a band, a class."""
    options = [{"label": "all validation images", "value": "all"}]
    names, _ = labels.band_ids(run)
    options += [{"label": f"band: {b}", "value": f"band:{b}"} for b in names]
    options += [{"label": f"class: {n}", "value": f"class:{i}"} for i, n in enumerate(run.names)]
    return options


def parse_group(value: str | None, num_classes: int) -> dict[str, Any]:
    """A group option's value as ``reliability``'s keywords ({} for the whole set)."""
    if value and value.startswith("band:"):
        return {"band": value[5:]}
    if value and value.startswith("class:"):
        try:
            index = int(value[6:])
        except ValueError:
            return {}
        return {"label": index} if 0 <= index < num_classes else {}
    return {}


def _pct(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.1%}"


def reliability_figure(report: dict[str, Any], title: str) -> go.Figure:
    """Reliability diagram of ``analysis.calibration``'s result: per bin of top-1 confidence
    the accuracy, before and after temperature scaling, against the diagonal of a calibrated
    model; ECE of both (and the temperature) in the title. Empty bins draw no bar."""
    fig = go.Figure()
    for key, name, colour, offset in (
        ("bins", "before scaling", BEFORE, -0.25),
        ("bins_scaled", "after temperature scaling", AFTER, 0.25),
    ):
        b = report[key]
        width = float(b["upper"][0] - b["lower"][0]) if len(b["lower"]) else 1.0
        centre = (np.asarray(b["lower"]) + np.asarray(b["upper"])) / 2
        count = np.asarray(b["count"])
        accuracy = np.where(count > 0, b["accuracy"], np.nan)
        fig.add_trace(
            go.Bar(
                x=(centre + offset * width / 2).tolist(),
                y=[None if np.isnan(a) else float(a) for a in accuracy],
                width=width * 0.45,
                name=name,
                marker_color=colour,
                meta=key,
                customdata=np.stack([count, b["confidence"]], axis=1).tolist(),
                hovertemplate=(
                    f"{name}<br>confidence %{{customdata[1]:.1%}}<br>accuracy %{{y:.1%}}"
                    "<br>%{customdata[0]} images<extra></extra>"
                ),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="calibrated",
            line={"color": "#888", "dash": "dot"},
            meta="diagonal",
        )
    )
    t = report.get("temperature")
    temp = f" (T = {t:.2f})" if t is not None and np.isfinite(t) else ""
    fig.update_layout(
        title={
            "text": f"{title}<br><sub>ECE {_pct(report['ece'])} before, "
            f"{_pct(report['ece_scaled'])} after temperature scaling{temp} · "
            f"{report['count']} images, 15 bins</sub>"
        },
        xaxis={"title": "top-1 confidence", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"title": "accuracy", "range": [0, 1], "tickformat": ".0%"},
        barmode="overlay",
        height=420,
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def message_figure(text: str) -> go.Figure:
    """An empty figure that says why there is nothing to draw."""
    fig = go.Figure()
    fig.update_layout(
        annotations=[{"text": text, "showarrow": False, "xref": "paper", "yref": "paper",
                      "x": 0.5, "y": 0.5}],
        xaxis={"visible": False}, yaxis={"visible": False}, height=200,
    )  # fmt: skip
    return fig
