"""Likely mislabeled images (thumbnails as data: URIs) and calibration (reliability diagram as
inline SVG, ECE), read through the Run's label analysis (epochscope/labels.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from epochscope.report.safe import esc, number, percent

if TYPE_CHECKING:
    from epochscope.run import Run

ISSUES = 24
LITE_ISSUES = 8


def issues_html(run: Run, epoch: int, allowed: list[Path], limit: int) -> str | None:
    """Cards of the most likely mislabeled images, None when the epoch has no label arrays."""
    from epochscope import labels
    from epochscope.images import row_thumbnail, source

    if epoch not in run.label_epochs:
        return None
    cols = labels.issue_columns(run, epoch, limit=limit)
    root = source(run, allowed).root
    cards = []
    for i in range(len(cols["index"])):
        row = int(cols["index"][i])
        uri = row_thumbnail(run, row, root)
        img = (f'<img src="{esc(uri)}" alt="validation image {row}">' if uri
               else '<div class="note">(no thumbnail)</div>')  # fmt: skip
        flag = " &middot; flagged" if cols["flagged"][i] else ""
        cards.append(
            f'<div class="thumb">{img}<div>#{row} score {number(cols["score"][i], 3)}{flag}</div>'
            f"<div>given: <b>{esc(cols['label_name'][i])}</b></div>"
            f"<div>model says: {esc(cols['suggested_name'][i])}</div></div>"
        )
    note = (
        "" if root is not None or run.info_or_none is None or not run.info.data.root
        else '<p class="note">Thumbnails come only from the run itself (its thumbnails.bin or '
        "thumbnails/ folder) unless the report is made with --data-root naming the folder of "
        "its images.</p>"
    )  # fmt: skip
    return (
        f'<p class="note">Scored over the last epochs up to {epoch} (self-confidence; '
        "flagged: confident learning).</p>" + note + f'<div class="thumbs">{"".join(cards)}</div>'
    )


def reliability_svg(bins: dict[str, list], scaled: dict[str, list], size: int = 320) -> str:
    """Accuracy per confidence bin (bars) against the diagonal, and after scaling (dots)."""
    pad = 36
    inner = size - 2 * pad

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x * inner, size - pad - y * inner

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             'role="img" aria-label="reliability diagram">',
             f'<rect width="{size}" height="{size}" fill="#fff"/>']  # fmt: skip
    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" '
                 'stroke-dasharray="4 3"/>')  # fmt: skip
    for lo, hi, acc, count in zip(bins["lower"], bins["upper"], bins["accuracy"], bins["count"],
                                  strict=True):  # fmt: skip
        if not count or acc is None:
            continue
        bx, by = xy(lo, acc)
        bw = (hi - lo) * inner
        parts.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" '
                     f'height="{y0 - by:.1f}" fill="#5b5bd6" fill-opacity="0.75">'
                     f"<title>{lo:.2f}-{hi:.2f}: accuracy {acc:.3f}, {count} images</title>"
                     "</rect>")  # fmt: skip
    for lo, hi, acc, count in zip(scaled["lower"], scaled["upper"], scaled["accuracy"],
                                  scaled["count"], strict=True):  # fmt: skip
        if count and acc is not None:
            cx, cy = xy((lo + hi) / 2, acc)
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="#d0503a"/>')
    parts.append(f'<text x="{pad}" y="{size - 8}" font-size="11">confidence (top-1) 0..1</text>'
                 f'<text x="8" y="{pad - 10}" font-size="11">accuracy</text></svg>')  # fmt: skip
    return "".join(parts)


def calibration_html(run: Run, epoch: int) -> str | None:
    from epochscope import labels

    if epoch not in run.label_epochs:
        return None
    cal: dict[str, Any] = labels.calibration_columns(run, epoch)
    ece = run.ece_series()
    series = ", ".join(f"{e}: {percent(v)}" for e, v in zip(ece["epoch"], ece["ece"], strict=True))
    return (
        '<div class="grid2"><div>'
        + reliability_svg(cal["bins"], cal["bins_scaled"])
        + '</div><div><table class="kv">'
        f"<tr><th>ECE</th><td>{percent(cal['ece'], 2)}</td></tr>"
        f"<tr><th>ECE after temperature scaling</th><td>{percent(cal['ece_scaled'], 2)}</td></tr>"
        f"<tr><th>temperature</th><td>{number(cal['temperature'], 4)}</td></tr>"
        f"<tr><th>top-1 accuracy</th><td>{percent(cal['accuracy'], 2)}</td></tr>"
        f"<tr><th>images counted</th><td>{esc(cal['count'])}</td></tr>"
        f"<tr><th>ECE per epoch</th><td>{esc(series)}</td></tr></table>"
        '<p class="note">Bars: accuracy of each of 15 confidence bins; dots: the same after '
        "temperature scaling; the dashed line is perfect calibration.</p></div></div>"
    )
