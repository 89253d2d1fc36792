"""The view kit's pure pieces: the run picker's rule, the epoch slider and Play, the zoomable
view's ranges and hover grid, the image card."""

from __future__ import annotations

import base64

import numpy as np

from dashboard.kit import cards, epochs, zoom
from dashboard.kit.picker import choose_run


def test_a_page_keeps_its_run_follows_the_shell_and_starts_from_the_url() -> None:
    names = ["new", "mid", "old"]
    assert choose_run(names, [], "mid", None, False) == "mid"  # ?run=mid on first load
    assert choose_run(names, ["old"], None, None, False) == "old"  # the shell's first pick
    assert choose_run(names, [], None, None, False) == "new"  # else the newest
    assert choose_run(names, ["old"], None, "mid", False) == "mid"  # the page's own choice stays
    assert choose_run(names, ["old"], None, "mid", True) == "old"  # picked in the shell: shown
    assert choose_run(names, ["mid", "old"], None, "mid", True) == "mid"  # still chosen: kept
    assert choose_run(names, ["gone"], "gone", "gone", True) == "new"  # nothing listed asked
    assert choose_run([], ["x"], "x", None, False) is None


def test_the_slider_follows_a_live_run_and_play_steps_through_its_stops() -> None:
    assert epochs.follow([1, 2, 3], 2, 3, False) == 2  # the user's epoch stays
    assert epochs.follow([1, 2, 3, 4], 3, 3, False) == 4  # on the latest: follows
    assert epochs.follow([1, 2, 3], 2, 3, True) == 3  # another run: its latest
    assert epochs.follow([2, 4], 3, 4, False) == 4  # not a stop any more
    marks = epochs.every_epoch_marks(list(range(1, 41)))
    assert len(marks) == 40 and marks[40] == "40" and sum(bool(v) for v in marks.values()) <= 16
    assert epochs.range_marks(40)[1] == "1" and epochs.range_marks(40)[40] == "40"
    assert epochs.marked_epochs({"3": "", "1": "1", "x": ""}) == [1, 3]
    assert epochs.stops(None, 1, 9, {"2": "", "5": ""}) == [2, 5]
    assert epochs.stops(1, 1, 3, None) == [1, 2, 3] and epochs.stops(1, None, 3, None) == []
    assert epochs.play_start([2, 5, 8], 8) == 2 and epochs.play_start([2, 5, 8], 5) == 5
    assert epochs.play_start([2, 5, 8], None) == 2
    assert epochs.play_next([2, 5, 8], 2) == 5 and epochs.play_next([2, 5, 8], 8) is None


def test_zoom_ranges_are_parsed_clamped_and_reset_with_their_context() -> None:
    full = ((0.0, 10.0), (0.0, 10.0))

    def fit(r: zoom.Range) -> zoom.Range:
        return zoom.clamp(r, (0.0, 10.0), 2.0)

    assert zoom.clamp((9.5, 12.0), (0.0, 10.0), 2.0) == (7.5, 10.0)  # moved, not shrunk
    assert zoom.clamp((3.0, 3.1), (0.0, 10.0), 2.0) == (2.05, 4.05)  # at least min_span
    assert zoom.clamp((-5.0, 50.0), (0.0, 10.0), 2.0) == (0.0, 10.0)  # no larger than extent
    assert zoom.relayout_axis({"xaxis.range": [1, 3]}, "xaxis") == (1.0, 3.0)
    assert zoom.relayout_axis({"xaxis.range[0]": 1, "xaxis.range[1]": 4}, "xaxis") == (1.0, 4.0)
    assert zoom.relayout_axis({"xaxis.autorange": True}, "xaxis") == "auto"
    assert zoom.relayout_axis({"xaxis.range": [1, float("nan")]}, "xaxis") is None
    assert zoom.moves_axes({"yaxis.range[0]": 1}) and not zoom.moves_axes({"autosize": True})
    prev = {"context": ["r"], "x": [2, 6], "y": [1, 5]}
    assert zoom.next_ranges(None, prev, ["r"], full, fit) == ((2.0, 6.0), (1.0, 5.0))
    moved = zoom.next_ranges({"xaxis.range": [3, 7]}, prev, ["r"], full, fit)
    assert moved == ((3.0, 7.0), (1.0, 5.0))
    auto = zoom.next_ranges({"yaxis.autorange": True}, prev, ["r"], full, fit)
    assert auto == ((2.0, 6.0), (0.0, 10.0))
    assert zoom.next_ranges({"xaxis.range": [3, 7]}, prev, ["other"], full, fit) == full


def test_the_hover_grid_is_one_transparent_cell_per_hover_cell() -> None:
    grid = zoom.HoverGrid(10, 0, 2, 1, 5, 3)
    assert grid.cell(11, 0.5) == ((10, 12), (0, 1))
    assert grid.cell(11.5, 0.5) is None  # not a centre: an older figure's event
    assert grid.cell(21, 0.5) is None  # outside
    assert abs(grid.radius - 0.5 * np.hypot(2, 1)) < 1e-9
    assert zoom.HoverGrid(**grid.to_dict()) == grid
    trace = zoom.hover_trace(grid, "cells")
    assert trace["opacity"] == 0 and trace["z"]["shape"] == "3, 5"
    assert len(base64.b64decode(trace["z"]["bdata"])) == 15
    assert (trace["x0"], trace["dx"], trace["y0"]) == (11, 2, 0.5)


def test_an_image_card_shows_its_image_or_says_there_is_none() -> None:
    card = cards.image_card("data:image/jpeg;base64,AA", ["text"], "map-image", size=72)
    assert card.className == "map-image"
    assert card.children[0].src.startswith("data:") and "image-72" in card.children[0].className
    missing = cards.image_card(None, ["text"], "confusion-image")
    assert missing.children[0].children == "no image"
