"""A run in a notebook: ``run = epochscope.open_run("runs/my-run")``.

``run.metrics`` (pandas DataFrame, one row per epoch), ``run.steps``, ``run.predictions(epoch)``
(top-5 indices and probabilities), ``run.confusion(epoch)`` (the [C, C] histogram the dashboard
draws), and ``run.confusion_view(epoch)``: a HoloViews + datashader matrix that re-renders as
you zoom in Jupyter, in the dashboard's order with its bands on the axes. pandas, HoloViews and
the dashboard's ordering are imported when first used.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from epochscope import reader
from epochscope.records import RunInfo


class RunView:
    """Read-only access to one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.dir = Path(path)
        if not (self.dir / "run.json").is_file():
            raise LookupError(f"{self.dir} is not a run directory (no run.json)")

    def __repr__(self) -> str:
        return f"<epochscope run {self.name!r}: {len(self.epochs)} epochs, {self.state}>"

    @property
    def name(self) -> str:
        return self.dir.name

    @cached_property
    def info(self) -> RunInfo:
        return reader.read_run_info(self.dir)

    @cached_property
    def classes(self) -> list[str]:
        """Class names, index order."""
        return [name for _, _, name in reader.read_classes(self.dir)]

    @property
    def labels(self) -> np.ndarray:
        return reader.read_val_index(self.dir)[0]

    @property
    def events(self) -> list[dict[str, Any]]:
        log = reader.MetricsLog(self.dir / "metrics.jsonl")
        log.refresh()
        return log.events

    @property
    def state(self) -> str:
        return reader.run_state(self.dir, self.events)

    @property
    def epochs(self) -> list[int]:
        """Epochs with predictions."""
        return reader.prediction_epochs(self.dir)

    @property
    def metrics(self) -> Any:
        """One row per epoch (the last event of a redone epoch), indexed by epoch."""
        import pandas as pd

        table = reader.epoch_table(self.events)
        rows = [
            {k: v for k, v in ev.items() if k not in ("kind", "epoch")} for ev in table.values()
        ]
        return pd.DataFrame(rows, index=pd.Index(list(table), name="epoch"))

    @property
    def steps(self) -> Any:
        import pandas as pd

        return pd.DataFrame([e for e in self.events if e.get("kind") == "step"])

    def _epoch(self, epoch: int | None) -> int:
        epochs = self.epochs
        if not epochs:
            raise LookupError(f"run {self.name!r} has no predictions yet")
        return epochs[-1] if epoch is None else epoch

    def predictions(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(top5 [N, 5] class indices, prob [N, 5]) of an epoch (default: the last)."""
        n = len(self.classes)
        return reader.load_predictions(self.dir, self._epoch(epoch), num_classes=n)

    def confusion(self, epoch: int | None = None, mode: str = "top5") -> np.ndarray:
        """int64 [C, C]: rows true class, columns guessed class; ``top5`` counts each of the
        five guesses (the dashboard's matrix), ``top1`` only the first."""
        top5, _ = self.predictions(epoch)
        guesses = top5[:, :1] if mode == "top1" else top5
        if mode not in ("top1", "top5"):
            raise ValueError(f"mode must be 'top1' or 'top5', not {mode!r}")
        true = np.broadcast_to(self.labels[:, None], guesses.shape)
        ok = guesses >= 0
        n = len(self.classes)
        flat = true[ok] * n + guesses[ok]
        return np.bincount(flat, minlength=n * n).reshape(n, n)

    def confusion_view(self, epoch: int | None = None, mode: str = "top5", order: str = "wordnet"):
        """A zoomable HoloViews matrix (datashader re-renders the visible range in Jupyter), in
        the dashboard's order (``wordnet``: the hierarchy order; ``index``; ``cluster``) with
        band names as axis ticks. Needs holoviews, datashader and bokeh."""
        import holoviews as hv
        from holoviews.operation.datashader import rasterize

        from dashboard.confusion import data, service

        epoch = self._epoch(epoch)
        slots = data.order(self.dir, order)  # type: ignore[arg-type]
        matrix = self.confusion(epoch, mode)[np.ix_(slots, slots)]
        n = len(slots)
        # y grows downwards as in the dashboard: row 0 (the first true class) at the top
        image = hv.Image(
            np.log1p(matrix.astype(np.float64)),
            bounds=(0, 0, n, n),
            kdims=["predicted", "true"],
            vdims=["log(1 + count)"],
        )
        ticks = [((b.start + b.stop) / 2, b.name) for b in service.bands_for(self.dir, order)]
        title = f"{self.name} · epoch {epoch} · {mode} · {service.order_label(self.dir, order)}"
        return rasterize(image).opts(
            cmap="viridis", width=700, height=700, colorbar=True, tools=["hover"],
            xticks=ticks or None, yticks=ticks or None, invert_yaxis=True, title=title,
            xrotation=60,
        )  # fmt: skip


def open_run(path: str | os.PathLike[str]) -> RunView:
    """A run directory for a notebook; LookupError when it is not one."""
    return RunView(path)
