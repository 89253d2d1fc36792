"""Accuracy and loss curves of one run (and of a compared run): Plotly figures as plain dicts
(drawn by the inlined plotly.js), or small inline SVG charts in a lite report (no plotly.js)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from epochscope.report.safe import esc

if TYPE_CHECKING:
    from epochscope.run import Run

ACCURACY = (("val_top5", "val top-5"), ("val_top1", "val top-1"),
            ("train_top5", "train top-5"), ("train_top1", "train top-1"))  # fmt: skip
LOSS = (("val_loss", "val loss"), ("train_loss", "train loss"))
COLOURS = ("#3a3ad0", "#d0503a", "#2a9a5a", "#b08a10", "#8a3ab0", "#3a9ab0")


def series(run: Run, keys: tuple[tuple[str, str], ...]) -> list[tuple[str, list[int], list]]:
    """(label, epochs, values) of each key some epoch event holds (missing values skipped)."""
    table = run.epoch_events
    out = []
    for key, label in keys:
        pts = [(e, ev.get(key)) for e, ev in sorted(table.items())]
        pts = [(e, float(v)) for e, v in pts if isinstance(v, int | float) and math.isfinite(v)]
        if pts:
            out.append((label, [e for e, _ in pts], [v for _, v in pts]))
    return out


def figure(
    lines: list[tuple[str, list[int], list]], title: str, y_title: str, percent: bool
) -> dict[str, Any]:
    """A Plotly figure (dict) of lines over epochs."""
    data = []
    for i, (label, xs, ys) in enumerate(lines):
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": label, "x": xs,
            "y": [100 * y for y in ys] if percent else ys,
            "line": {"color": COLOURS[i % len(COLOURS)],
                     "dash": "dot" if label.startswith("B:") else "solid"},
            "hovertemplate": "epoch %{x}: %{y:.2f}" + ("%" if percent else "") + "<extra></extra>",
        })  # fmt: skip
    layout = {
        "title": {"text": title}, "height": 360, "margin": {"l": 60, "r": 20, "t": 50, "b": 45},
        "xaxis": {"title": {"text": "epoch"}, "dtick": 1 if max((len(x) for _, x, _ in lines),
                                                                default=0) <= 30 else None},
        "yaxis": {"title": {"text": y_title}}, "legend": {"orientation": "h", "y": -0.2},
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#f7f7fb",
    }  # fmt: skip
    return {"data": data, "layout": layout}


def svg_chart(
    lines: list[tuple[str, list[int], list]],
    title: str,
    percent: bool,
    width: int = 520,
    height: int = 260,
) -> str:
    """The same lines as a static SVG (labels escaped)."""
    pad_l, pad_r, pad_t, pad_b = 48, 12, 26, 30
    xs = [x for _, x, _ in lines for x in x]
    ys = [(100 * y if percent else y) for _, _, y in lines for y in y]
    if not xs:
        return ""
    x0, x1 = min(xs), max(xs)
    y0, y1 = (0.0, 100.0) if percent else (min(0.0, min(ys)), max(ys) * 1.05 or 1.0)
    x1 = x1 if x1 > x0 else x0 + 1

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def py(y: float) -> float:
        return height - pad_b - (y - y0) / ((y1 - y0) or 1) * (height - pad_t - pad_b)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{esc(title)}">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>',
             f'<text x="{pad_l}" y="16" font-size="13">{esc(title)}</text>']  # fmt: skip
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{py(yv):.1f}" '
                     f'y2="{py(yv):.1f}" stroke="#e3e3ea"/>'
                     f'<text x="{pad_l - 4}" y="{py(yv) + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{yv:.3g}</text>')  # fmt: skip
    parts.append(f'<text x="{(width + pad_l) / 2}" y="{height - 6}" font-size="10" '
                 f'text-anchor="middle">epoch {x0} .. {x1}</text>')  # fmt: skip
    for i, (label, lx, ly) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{px(x):.1f},{py(100 * y if percent else y):.1f}"
                       for x, y in zip(lx, ly, strict=True))  # fmt: skip
        dash = ' stroke-dasharray="4 3"' if "B:" in label else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} '
                     f'points="{pts}"><title>{esc(label)}</title></polyline>')  # fmt: skip
        parts.append(f'<text x="{width - pad_r - 110}" y="{pad_t + 12 + 13 * i}" font-size="11" '
                     f'fill="{colour}">{esc(label)}</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def compared(a: Run, b: Run, keys: tuple[tuple[str, str], ...]) -> list:
    """Both runs' lines, labelled ``A: ...`` and ``B: ...`` (run names are in the section's
    text, escaped, not in the figure)."""
    return [(f"A: {lab}", x, y) for lab, x, y in series(a, keys)] + [
        (f"B: {lab}", x, y) for lab, x, y in series(b, keys)
    ]
