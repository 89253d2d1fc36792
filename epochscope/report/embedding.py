"""Relatedness of the mistakes, the band silhouette, and the embedding map as an image (only
when a layout is already cached: the report computes no UMAP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from epochscope.report.colours import band_colour
from epochscope.report.html import band_legend
from epochscope.report.png import png_uri
from epochscope.report.safe import esc, number, percent

if TYPE_CHECKING:
    from epochscope.run import Run

MAP_PX = 480


def relatedness_html(run: Run, epoch: int) -> str | None:
    rel = run.relatedness(epoch)
    sil = None
    if epoch in run.embedding_epochs:
        sil = run.band_silhouette(epoch)
    if rel is None and sil is None:
        return None
    parts = []
    if rel is not None:
        parts.append(
            '<table class="kv">'
            f"<tr><th>wrong top-5 guesses counted</th><td>{esc(rel.wrong)}</td></tr>"
            f"<tr><th>in the true class's band</th><td>{percent(rel.same_band)} "
            f"(chance {percent(rel.chance_same_band)})</td></tr>"
            f"<tr><th>sharing a parent</th><td>{percent(rel.same_parent)} "
            f"(chance {percent(rel.chance_same_parent)})</td></tr>"
            f"<tr><th>mean distance in the hierarchy</th><td>{number(rel.mean_distance, 3)} "
            f"(chance {number(rel.chance_distance, 3)})</td></tr>"
            f"<tr><th>hierarchy</th><td>{esc(rel.source)}</td></tr></table>"
        )
        if rel.by_band:
            rows = "".join(
                f"<tr><td>{esc(b)}</td><td class='num'>{esc(n)}</td>"
                f"<td class='num'>{percent(s)}</td></tr>"
                for b, n, s in rel.by_band
            )
            parts.append(
                "<h3>By band of the true class</h3><table><thead><tr><th>band</th>"
                "<th class='num'>wrong guesses</th><th class='num'>in the same band</th></tr>"
                f"</thead><tbody>{rows}</tbody></table>"
            )
    if sil is not None:
        parts.append(
            f"<p>Silhouette of the {esc(run.silhouette_groups)} in epoch {esc(epoch)}'s "
            f"embedding space (cosine, a sample of at most 5,000 images): "
            f"<b>{number(sil, 3)}</b> (1: well apart, 0: overlapping).</p>"
        )
    return "".join(parts)


def map_html(run: Run, epoch: int) -> str | None:
    """The cached embedding map of the shown epoch (else the newest cached), coloured by band."""
    if not run.embedding_epochs:
        return None
    candidates = [epoch] if epoch in run.embedding_epochs else []
    candidates += [e for e in reversed(run.embedding_epochs) if e != epoch]
    for e in candidates:
        coords = run.cached_map_layout(e)
        if coords is not None:
            break
    else:
        return None
    keyed = run.bands if run.has_bands else [str(c % 12) for c in range(run.num_classes)]
    names = sorted(set(keyed))
    palette = np.array([band_colour(b) for b in names], np.float64)
    colour_of_class = np.array([names.index(b) for b in keyed])
    ids = colour_of_class[run.labels]
    px = np.clip(((coords + 1) / 2 * (MAP_PX - 1)).round().astype(int), 0, MAP_PX - 1)
    img = np.full((MAP_PX, MAP_PX, 3), 255.0)
    sums = np.zeros((MAP_PX, MAP_PX, 3))
    counts = np.zeros((MAP_PX, MAP_PX))
    np.add.at(sums, (MAP_PX - 1 - px[:, 1], px[:, 0]), palette[ids])
    np.add.at(counts, (MAP_PX - 1 - px[:, 1], px[:, 0]), 1)
    hit = counts > 0
    img[hit] = sums[hit] / counts[hit][:, None]
    legend = band_legend(run.bands) if run.has_bands else ""
    return (
        f"<p class='note'>Epoch {esc(e)}: every validation image placed by UMAP of its stored "
        "embedding (the layout the dashboard's map computed), coloured by band.</p>"
        f'<img src="{png_uri(img.astype(np.uint8))}" width="{MAP_PX}" height="{MAP_PX}" '
        f'alt="embedding map">{legend}'
    )
