"""What the confusion explorer's callbacks decide (dashboard/confusion/state.py), without a
browser: the ranges to render, the view kept, the line under the matrix, what a drill-down
lists and the compared epoch."""

from __future__ import annotations

from dashboard.confusion import state
from dashboard.confusion.state import Drill

CONTEXT = ["r", "wordnet", 20]
WHOLE = ((0.0, 20.0), (0.0, 20.0))


def _kept(x=(0.0, 20.0), y=(0.0, 20.0), context=CONTEXT) -> dict:
    grid = {"x0": 0, "y0": 0, "dx": 1, "dy": 1, "nx": 20, "ny": 20}
    return state.stored_view(context, x, y, grid, 3, None, (800, 800), False)


def test_the_first_view_is_the_whole_matrix_or_the_zoom_a_link_names() -> None:
    assert state.matrix_ranges(None, None, CONTEXT, False, None, None) == WHOLE
    linked = {"run": "r", "x": [4, 12], "y": [14, 30]}  # y moved back inside the matrix
    assert state.matrix_ranges(None, None, CONTEXT, False, linked, None) == (
        (4.0, 12.0),
        (4.0, 20.0),
    )
    other = {"run": "other", "x": [4, 12]}
    assert state.matrix_ranges(None, None, CONTEXT, False, other, None) == WHOLE
    # the link's zoom is for the first view only: later views start from the previous one
    previous = _kept(x=(1.0, 5.0), y=(1.0, 5.0))
    assert state.matrix_ranges(None, previous, CONTEXT, False, linked, None) == (
        (1.0, 5.0),
        (1.0, 5.0),
    )


def test_a_zoom_moves_the_previous_view_and_another_context_starts_over() -> None:
    previous = _kept(x=(2.0, 10.0), y=(2.0, 10.0))
    zoom = {"xaxis.range[0]": 4, "xaxis.range[1]": 8}
    assert state.matrix_ranges(zoom, previous, CONTEXT, True, None, None) == (
        (4.0, 8.0),
        (2.0, 10.0),
    )
    # the same event not from the graph (an epoch change): the view is kept
    assert state.matrix_ranges(zoom, previous, CONTEXT, False, None, None) == (
        (2.0, 10.0),
        (2.0, 10.0),
    )
    clustered = ["r", "cluster", 20]  # slots name other classes: the whole matrix again
    assert state.matrix_ranges(zoom, previous, clustered, True, None, None) == WHOLE


def test_a_class_found_by_the_search_is_shown_for_its_run_only() -> None:
    previous = _kept(x=(2.0, 10.0), y=(2.0, 10.0))
    found = {"run": "r", "x": [6.0, 9.0], "y": [6.0, 9.0], "class": 7}
    assert state.matrix_ranges(None, previous, CONTEXT, False, None, found) == (
        (6.0, 9.0),
        (6.0, 9.0),
    )
    found_elsewhere = {**found, "run": "other"}
    assert state.matrix_ranges(None, previous, CONTEXT, False, None, found_elsewhere) == (
        (2.0, 10.0),
        (2.0, 10.0),
    )


def test_the_kept_view_names_what_later_callbacks_read() -> None:
    kept = state.stored_view(("r", "index", 20), (1.0, 9.0), (2.0, 4.0), {"dx": 1}, 5,
                             ("b", 4), (640, 480), True)  # fmt: skip
    assert kept == {
        "context": ["r", "index", 20], "x": [1.0, 9.0], "y": [2.0, 4.0], "grid": {"dx": 1},
        "epoch": 5, "compare": ["b", 4], "size": [640, 480], "hide_diagonal": True,
    }  # fmt: skip
    assert _kept()["compare"] is None


def test_the_line_under_the_matrix() -> None:
    info = state.matrix_info((0.0, 20.0), (5.2, 9.7), 20480, 0.0123)
    assert info.startswith("Showing slots 0-20 (predicted) x 5-10 (true) · ")
    assert "image 20 KB, rendered in 12 ms" in info


def test_an_active_row_is_one_of_the_rows_shown() -> None:
    rows = [{"index": 3}, {"index": 8}]
    assert state.active_row({"row": 1, "column": 0}, rows) == {"index": 8}
    assert state.active_row({"row": 2}, rows) is None  # the table changed under the cell
    assert state.active_row({"row": -1}, rows) is None
    assert state.active_row(None, rows) is None and state.active_row({"row": 0}, []) is None


def test_the_drill_down_trigger_prefers_the_user_over_a_new_view() -> None:
    click, active = {"points": [{}]}, {"row": 0}
    assert state.drill_trigger(["confusion-selected.data", "confusion-view.data"], None,
                               None) == "confusion-selected"  # fmt: skip
    # a link opens: the pairs table's active cell is cleared as the first view arrives
    assert state.drill_trigger(["confusion-pairs.active_cell", "confusion-view.data"], None,
                               None) == "confusion-view"  # fmt: skip
    assert state.drill_trigger(["confusion-pairs.active_cell"], None, active) == "confusion-pairs"
    assert state.drill_trigger(["confusion-graph.clickData", "confusion-view.data"], click,
                               None) == "confusion-graph"  # fmt: skip
    assert state.drill_trigger(None, None, None) == "confusion-graph"


def test_a_new_view_drills_into_a_links_cell_or_class_once() -> None:
    def target(drilled=False, cell=None, selected=None):
        return state.drill_target("confusion-view", 20, drilled, cell, selected, None, None)

    assert target(cell=[3, 11], selected=7) == Drill(cell=(3, 11), from_link=True)
    assert target(selected=7) == Drill(cls=7, from_link=True)
    assert target(cell=[3, 25], selected=7) == Drill(cls=7, from_link=True)  # outside
    assert target() is None  # a link with neither
    assert target(drilled=True, cell=[3, 11]) is None  # drilled already: a new view is not asked


def test_a_selection_a_pair_or_a_click_drills_and_is_kept_as_the_cell() -> None:
    def target(trigger, selected=None, pair=None, clicked=None):
        return state.drill_target(trigger, 20, True, [1, 2], selected, pair, clicked)

    chosen = target("confusion-selected", selected=4)
    assert chosen == Drill(cls=4) and chosen.stored is None  # the kept cell is cleared
    assert target("confusion-selected", selected=20) is None
    assert target("confusion-selected") is None
    pair = target("confusion-pairs", pair={"true_index": "5", "pred_index": 9, "count": 3})
    assert pair == Drill(cell=(5, 9)) and pair.stored == [5, 9]
    assert target("confusion-pairs") is None  # no row under the active cell
    assert target("confusion-graph", clicked=(2, 6)).stored == [2, 6]
    assert target("confusion-graph") is None  # a click between cells


def test_the_compared_epoch() -> None:
    epochs = [1, 2, 3, 4]

    def choose(compare="b", run="a", epoch=3, current=None, wanted=None, changed=False):
        return state.compare_epoch(epochs, compare, run, epoch, current, wanted, changed)

    assert choose(current=2) == 2  # kept while the compared run has it
    assert choose(current=2, changed=True) == 3  # another run chosen: the same epoch
    assert choose(current=9) == 3
    assert choose(wanted={"compare": "b", "compare_epoch": 1}) == 1  # a link's
    assert choose(wanted={"compare": "c", "compare_epoch": 1}) == 3  # a link for another run
    assert choose(compare="a", epoch=3) == 2  # the same run: against the previous epoch
    assert choose(compare="a", epoch=1) == 4  # none before the first: the last
    assert choose(epoch=7) == 4  # the other run has not that epoch: its last
    assert state.compare_epoch([], "b", "a", 3, None, None, False) is None
