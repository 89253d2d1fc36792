"""A run in a notebook: ``run = epochscope.open_run("runs/my-run")`` (an :class:`epochscope.Run`).

The adapters here are what a notebook adds to a Run, imported when first used: ``run.metrics``
(pandas DataFrame, one row per epoch), ``run.steps``, and ``run.confusion_view(epoch)``: a
HoloViews + datashader matrix that re-renders as you zoom in Jupyter, in the dashboard's order
with its bands on the axes. The rest (``run.predictions(epoch)``, ``run.confusion(epoch)``,
``run.class_stats(epoch)``, ...) is the Run itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from epochscope.analysis.bands import band_runs

if TYPE_CHECKING:
    from epochscope.analysis.confusion import Mode
    from epochscope.analysis.ordering import OrderKind
    from epochscope.run import Run


def metrics_frame(run: Run) -> Any:
    """One row per epoch (the last event of a redone epoch), indexed by epoch."""
    import pandas as pd

    table = run.epoch_events
    rows = [{k: v for k, v in ev.items() if k not in ("kind", "epoch")} for ev in table.values()]
    return pd.DataFrame(rows, index=pd.Index(list(table), name="epoch"))


def steps_frame(run: Run) -> Any:
    import pandas as pd

    return pd.DataFrame([e for e in run.events if e.get("kind") == "step"])


def confusion_view(
    run: Run, epoch: int | None = None, mode: Mode = "top5", order: OrderKind = "wordnet"
) -> Any:
    """A zoomable HoloViews matrix (datashader re-renders the visible range in Jupyter), in
    the dashboard's order (``wordnet``: the hierarchy order; ``index``; ``cluster``) with
    band names as axis ticks. Needs holoviews, datashader and bokeh."""
    import holoviews as hv
    from holoviews.operation.datashader import rasterize

    epoch = run.epoch(epoch)
    slots = run.order(order)
    matrix = run.confusion(epoch, mode).dense()[np.ix_(slots, slots)]
    n = len(slots)
    # y grows downwards as in the dashboard: row 0 (the first true class) at the top
    image = hv.Image(
        np.log1p(matrix.astype(np.float64)),
        bounds=(0, 0, n, n),
        kdims=["predicted", "true"],
        vdims=["log(1 + count)"],
    )
    bands = band_runs(run.bands, slots) if run.has_bands else []
    ticks = [((b.start + b.stop) / 2, b.name) for b in bands]
    title = f"{run.name} · epoch {epoch} · {mode} · {run.order_label(order)}"
    return rasterize(image).opts(
        cmap="viridis", width=700, height=700, colorbar=True, tools=["hover"],
        xticks=ticks or None, yticks=ticks or None, invert_yaxis=True, title=title,
        xrotation=60,
    )  # fmt: skip
