"""``build_report``: one self-contained HTML document of a run, assembled from the sections.

Everything is read through the :class:`epochscope.Run` read model; every text from the run is
escaped and every JSON block made safe inside ``<script>`` (safe.py). plotly.js is inlined
(``plotly.offline.get_plotlyjs()``, so the ``plotly`` package is needed) unless ``lite``, which
draws the curves as inline SVG instead; Pillow renders the matrix images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from epochscope.report import curves, embedding, labels, matrix, tables
from epochscope.report import photos as photo_views
from epochscope.report.assets import css, js
from epochscope.report.colours import band_colour, hex_colour
from epochscope.report.header import header
from epochscope.report.html import Section, band_legend, json_block
from epochscope.report.safe import esc

if TYPE_CHECKING:
    from epochscope.run import Run

#: progress(step, done, total): what the command line draws its progress bar from
Progress = Callable[[str, int, int], None]
#: evolution frames at most (evenly spaced epochs, the first and last included); lite: fewer
FRAMES = 30
LITE_FRAMES = 10


class ReportError(ValueError):
    """What the report cannot be made of (an epoch not in the run, classes that differ)."""


def pick_epoch(run: Run, epoch: int | None) -> int | None:
    """The epoch shown: ``epoch`` (ReportError when the run has no predictions for it), else
    the last with predictions, else None (a run without predictions has curves only)."""
    if epoch is None:
        return run.epochs[-1] if run.epochs else None
    if epoch not in run.epochs:
        have = ", ".join(map(str, run.epochs)) or "none"
        raise ReportError(
            f"epoch {epoch} is not in run {run.name!r} (epochs with predictions: {have})"
        )
    return epoch


def spaced(epochs: list[int], most: int) -> list[int]:
    """At most ``most`` of ``epochs``, evenly spaced, first and last kept."""
    if len(epochs) <= most:
        return list(epochs)
    idx = np.unique(np.linspace(0, len(epochs) - 1, most).round().astype(int))
    return [epochs[i] for i in idx]


def _classes_block(run: Run) -> dict[str, Any]:
    order = run.order(matrix.ORDER)
    bands = run.bands
    band_names = sorted(set(bands))
    band_id = {b: i for i, b in enumerate(band_names)}
    index_of: dict[str, int] = {}
    for i, name in enumerate(run.names):
        index_of.setdefault(name, i)
    return {
        "names": [run.names[int(c)] for c in order],  # by display slot
        "slot": [int(s) for s in run.positions(matrix.ORDER)],  # by class index
        "index_of": index_of,
        "band_of_slot": [band_id[bands[int(c)]] for c in order],
        "colours": [hex_colour(band_colour(b)) for b in band_names],
    }


def _viewer(view_id: str, config: dict[str, Any], caption: str, names: bool) -> str:
    finder = (
        '<label>true <input type="text" class="es-true" list="es-names"></label>'
        '<label>guess <input type="text" class="es-guess" list="es-names"></label>'
        '<button type="button" class="es-go">zoom to cell</button>'
        if names
        else ""
    )
    return (
        f'<div class="es-matrix" id="{esc(view_id)}" data-config="{esc(view_id)}-config">'
        f'<div class="es-controls"><button type="button" class="es-in">zoom in</button>'
        f'<button type="button" class="es-out">zoom out</button>'
        f'<button type="button" class="es-reset">whole matrix</button>{finder}'
        f'<span class="note es-zoom"></span></div>'
        f'<canvas width="732" height="732" style="width:732px;height:732px"></canvas>'
        f'<div class="es-readout"></div><p class="note">{caption}</p></div>'
        + json_block(f"{view_id}-config", config)
    )


def _band_legend(run: Run) -> str:
    return band_legend(run.bands) if run.has_bands else ""


def _curves_section(run: Run, other: Run | None, lite: bool) -> Section | None:
    figs = []
    if other is None:
        acc = curves.series(run, curves.ACCURACY)
        loss = curves.series(run, curves.LOSS)
    else:
        acc = curves.compared(run, other, curves.ACCURACY[:2])
        loss = curves.compared(run, other, curves.LOSS)
    if acc:
        figs.append(("accuracy", acc, "Accuracy", "%", True))
    if loss:
        figs.append(("loss", loss, "Loss", "loss", False))
    if not figs:
        return None
    body, data = "", {}
    for key, lines, title, y, pct in figs:
        if lite:
            body += curves.svg_chart(lines, title, pct)
        else:
            block = f"es-plot-{key}"
            data[block] = curves.figure(lines, title, y, pct)
            body += f'<div class="es-plot" data-plot="{block}" style="min-height:360px"></div>'
    if other is not None:
        body = (f"<p>A: <b>{esc(run.name)}</b> &middot; B (dotted): <b>{esc(other.name)}</b></p>"
                + body)  # fmt: skip
    return Section("curves", "Accuracy and loss", f'<div class="grid2">{body}</div>', data)


def build_report(
    run: Run,
    epoch: int | None = None,
    compare: Run | None = None,
    photos: Iterable[str | os.PathLike[str]] = (),
    lite: bool = False,
    *,
    data_roots: Iterable[str | os.PathLike[str]] = (),
    progress: Progress | None = None,
) -> str:
    """One HTML document of ``run`` at ``epoch`` (default: its last with predictions).

    ``compare``: another Run (same classes) whose curves are drawn beside and whose last epoch's
    matrix is subtracted; ``photos``: image files classified with the epoch's model (top-5);
    ``lite``: no plotly.js (SVG curves), no matrix read-out, fewer and smaller evolution
    frames, fewer thumbnails; ``data_roots``: folders the validation thumbnails may be read
    from (default: only the run's own thumbnails). ReportError for an epoch the run lacks or
    a compared run with other classes."""
    photo_list = list(photos)
    allowed = [Path(p) for p in data_roots]
    e = pick_epoch(run, epoch)
    other_epoch = None
    if compare is not None:
        try:
            run.check_same_classes(compare)
        except ValueError as err:
            raise ReportError(f"--compare: {err}") from None
        other_epoch = compare.epochs[-1] if compare.epochs else None
    has_matrix = e is not None and run.num_classes <= matrix.MAX_CLASSES and run.num_classes > 0
    steps: list[tuple[str, Callable[[], Section | None]]] = []
    sections: list[Section] = []
    title, head = header(run, e)
    sections.append(head)
    steps.append(("curves", lambda: _curves_section(run, compare, lite)))

    if has_matrix:
        assert e is not None

        def confusion() -> Section:
            pyr = matrix.confusion_pyramid(run, e, with_cells=not lite)
            caption = (
                f"Epoch {esc(e)}, top-5: each cell is the share of the true class's validation "
                "images with that class among their five guesses (log colour scale, 0.1% to "
                f"100%), classes in {esc(run.order_label(matrix.ORDER))}, band strips along both "
                "axes. Scroll to zoom, drag to pan; zoomed out, each pixel shows the largest "
                "share of the cells it covers."
            )
            body = _viewer("es-confusion", pyr.config("share"), caption, names=True)
            return Section("confusion", "Top-5 confusion matrix", body + _band_legend(run))

        steps.append(("confusion matrix", confusion))

        def evolution() -> Section | None:
            shown = spaced([x for x in run.epochs if x <= e], LITE_FRAMES if lite else FRAMES)
            if len(shown) < 2:
                return None
            side = matrix.FRAME_PX // 2 if lite else matrix.FRAME_PX
            frames = matrix.evolution_frames(run, shown, side)
            px = max(side, 2 * min(side, run.num_classes))
            body = (
                '<div class="es-slider" data-frames="es-frames"><div class="es-controls">'
                f'<input type="range" min="0" max="{len(shown) - 1}" value="{len(shown) - 1}">'
                '<button type="button" class="es-play">play</button><b class="es-epoch"></b>'
                f'</div><img class="pixelated" width="{px}" height="{px}" alt="matrix of an '
                'epoch"></div><p class="note">The top-5 matrix of each epoch shown, same order '
                "and colours.</p>"
            )
            return Section("evolution", "The matrix over the epochs", body,
                           {"es-frames": {"epochs": shown, "frames": frames}})  # fmt: skip

        steps.append(("evolution", evolution))

        def classes() -> Section:
            pairs = tables.pairs_table(run, e)
            body = ""
            if pairs:
                body += (
                    f"<h3>Most confused pairs (top-1, epoch {esc(e)})</h3>"
                    f'<div class="scroll">{pairs}</div>'
                )
            body += (
                "<h3>Per class</h3><div class='es-controls'><input type='text' class='es-filter' "
                "data-table='es-classes-table' data-count='es-classes-count' "
                "placeholder='filter classes'><span id='es-classes-count' class='note'></span>"
                "</div><p class='note'>Click a column's title to sort.</p>"
                f"<div class='scroll'>{tables.class_table(run, e)}</div>"
            )
            return Section("classes", "Mistakes by class", body)

        steps.append(("per-class tables", classes))

    if e is not None:
        limit = labels.LITE_ISSUES if lite else labels.ISSUES
        optional = [
            ("relatedness", "Relatedness of the mistakes", embedding.relatedness_html, ()),
            ("label-issues", "Likely mislabeled images", labels.issues_html, (allowed, limit)),
            ("calibration", "Calibration", labels.calibration_html, ()),
            ("map", "Embedding map", embedding.map_html, ()),
        ]
        for sid, stitle, make, extra in optional:
            steps.append((sid.replace("-", " "), _optional(sid, stitle, make, run, e, *extra)))
        if photo_list:

            def classify() -> Section:
                model_e, found = photo_views.classify(run, e, photo_list)
                return Section("photos", "Photos", photo_views.photos_html(model_e, found))

            steps.append(("photos", classify))

    if compare is not None and has_matrix and other_epoch is not None:
        assert e is not None

        def difference() -> Section:
            pyr, scale = matrix.difference_pyramid(run, e, compare, other_epoch, not lite)
            caption = (
                f"Top-5 shares of {esc(run.name)} epoch {esc(e)} minus {esc(compare.name)} "
                f"epoch {esc(other_epoch)}: red where this run's share is higher, blue where "
                f"the compared run's is (full colour at {100 * scale:.1f} points)."
            )
            body = _viewer("es-difference", pyr.config("diff"), caption, names=True)
            return Section("difference", "Difference matrix", body)

        steps.append(("difference matrix", difference))

    for i, (name, step) in enumerate(steps):
        if progress is not None:
            progress(name, i, len(steps))
        section = step()
        if section is not None:
            sections.append(section)
    if progress is not None:
        progress("writing", len(steps), len(steps))

    blocks = []
    if has_matrix:
        blocks.append(json_block("es-classes", _classes_block(run)))
        names = sorted(set(run.names))
        options = "".join(f'<option value="{esc(n)}">' for n in names)
        blocks.append(f'<datalist id="es-names">{options}</datalist>')
    for s in sections:
        blocks.extend(json_block(k, v) for k, v in s.data.items())
    toc = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    plotly = "" if lite else f"<script>{_plotly_js()}</script>"
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline' 'unsafe-eval'\">"
        f"<title>Epochscope report: {esc(run.name)}</title><style>{css()}</style>{plotly}</head>"
        f'<body>{title}<nav class="toc">{toc}</nav><main>{body}</main>'
        f"<footer class='note' style='padding:0 28px 20px'>Made by epochscope on {made}"
        f"{' (lite)' if lite else ''}; opens offline, fetches nothing.</footer>"
        f"{''.join(blocks)}<script>{js()}</script></body></html>\n"
    )


def _optional(
    section_id: str, title: str, make: Callable[..., str | None], *args: Any
) -> Callable[[], Section | None]:
    """A step making a section that the run may not have the data for (``make`` gives None)."""

    def step() -> Section | None:
        body = make(*args)
        return Section(section_id, title, body) if body else None

    return step


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ReportError(
            "the report's interactive curves need the plotly package (pip install plotly, or "
            "requirements.txt); --lite needs only Pillow"
        ) from None
    js = get_plotlyjs()
    return js.replace("</script", "<\\/script")
