"""What the matrix view derives from a Run: the cells it draws, at their display slots.

Kept in the Run's memo, so the worker's one bound on its Runs (dashboard.runs) covers them.
"""

from __future__ import annotations

from dashboard.runs import at as run
from dashboard.runs import clear
from epochscope.analysis.confusion import Mode, Norm
from epochscope.analysis.ordering import OrderKind
from epochscope.run import Run

from .render import Points, place, place_cells

__all__ = ["clear", "difference_points", "points", "run"]


def points(
    run: Run,
    epoch: int,
    mode: Mode,
    kind: OrderKind,
    hide_diagonal: bool = False,
    norm: Norm = "count",
) -> Points:
    """The cells of an epoch at their display slots, ready to render."""
    kind = run.effective_order(kind)

    def build() -> Points:
        pos = run.positions(kind)
        if not hide_diagonal and norm == "count":
            return place(run.confusion(epoch, mode), pos)
        return place_cells(*run.cells(epoch, mode, hide_diagonal, norm), pos, run.num_classes)

    return run.memo(("points", epoch, mode, kind, hide_diagonal, norm), build)


def difference_points(
    run: Run,
    epoch: int,
    other: Run,
    other_epoch: int,
    mode: Mode,
    kind: OrderKind,
    hide_diagonal: bool = False,
) -> Points:
    """Share here - share in ``other`` per cell, at this run's display slots."""
    kind = run.effective_order(kind)

    def build() -> Points:
        cells = run.difference(epoch, other, other_epoch, mode, hide_diagonal)
        return place_cells(*cells, run.positions(kind), run.num_classes)

    key = ("difference_points", other.key, epoch, other_epoch, mode, kind, hide_diagonal)
    return run.memo(key, build)
