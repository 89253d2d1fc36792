"""A view's state in its URL: the query a page writes reads back as the same view, and a
hostile or broken query falls back to the defaults."""

from __future__ import annotations

from urllib.parse import parse_qs

from dashboard.confusion import link as confusion
from dashboard.confusion.link import view_from_query
from dashboard.embedding_map import link as embedding_map
from dashboard.kit import url


def _query(search: str) -> dict:
    return {k: v[0] for k, v in parse_qs(search.lstrip("?")).items()}


def test_the_matrix_link_reads_back_as_the_same_view() -> None:
    view = {"context": ["r", "index", 20], "x": [4.0, 12.0], "y": [2.5, 9.0], "epoch": 1}
    search = confusion.view_query("r", 1, "top1", "index", "log", ["row"], "b", 2, view, 7)
    back = view_from_query(_query(search))
    assert back == {
        "run": "r", "epoch": 1, "compare": "b", "compare_epoch": 2, "mode": "top1",
        "order": "index", "scale": "log", "options": ["row"], "x": (4.0, 12.0),
        "y": (2.5, 9.0), "cls": 7,
    }  # fmt: skip
    whole = {"context": ["r", "wordnet", 20], "x": [0, 20], "y": [0, 20]}
    plain = confusion.view_query("r", 3, "top5", "wordnet", "eq_hist", [], None, 5, whole, None)
    assert plain == "?run=r&epoch=3"  # defaults and the whole matrix leave no trace
    other = {"context": ["other", "wordnet", 20], "x": [1, 3], "y": [1, 3]}
    assert "x=" not in confusion.view_query("r", 3, "top5", "wordnet", "eq_hist", [], None,
                                            None, other, None)  # fmt: skip


def test_a_linked_zoom_is_kept_inside_the_matrix_and_only_for_its_run() -> None:
    full = ((0.0, 20.0), (0.0, 20.0))
    wanted = {"run": "r", "x": (4.0, 12.0), "y": (-5.0, 3.0)}
    assert confusion.linked_zoom(wanted, "r", 20, full) == ((4.0, 12.0), (0.0, 8.0))
    assert confusion.linked_zoom(wanted, "other", 20, full) == full
    assert confusion.linked_zoom({"run": "r"}, "r", 20, full) == full


def test_a_broken_query_gives_the_default_view() -> None:
    bad = {"epoch": "-3", "mode": "evil", "order": ["index", "x"], "opt": "row,rm -rf",
           "x": "1,nan", "y": "5,1", "cls": "1e9"}  # fmt: skip
    view = view_from_query(bad)
    assert view["epoch"] is None and view["mode"] == "top5" and view["order"] == "index"
    assert view["options"] == ["row"] and view["x"] is None and view["y"] is None
    assert view["cls"] is None


def test_the_map_link_reads_back_as_the_same_map() -> None:
    view = {"context": ["r"], "x": [-0.5, 0.25], "y": [0.0, 1.0], "epoch": 4}
    search = embedding_map.view_query("r", 4, "class", view)
    assert embedding_map.view_from_query(_query(search)) == {
        "run": "r", "epoch": 4, "colour": "class", "x": (-0.5, 0.25), "y": (0.0, 1.0),
    }  # fmt: skip
    whole = {"context": ["r"], "x": [-1.05, 1.05], "y": [-1.05, 1.05]}
    assert embedding_map.view_query("r", 4, "band", whole) == "?run=r&epoch=4"
    assert embedding_map.view_from_query({"colour": "pink"})["colour"] == "band"


def test_query_leaves_out_what_is_not_set() -> None:
    assert url.query([("a", None), ("b", ""), ("c", []), ("d", [1, 2])]) == "?d=1%2C2"
    assert url.query([]) == ""
    assert url.span("3,1") is None and url.span("1,3") == (1.0, 3.0)
    assert url.integer(["5", "6"]) == 5 and url.integer("x") is None
