"""A view's state in its URL: the query a page writes reads back as the same view, and a
hostile or broken query falls back to the defaults."""

from __future__ import annotations

from urllib.parse import parse_qs

from dashboard.confusion import link as confusion
from dashboard.confusion.link import view_from_query
from dashboard.embedding_map import link as embedding_map
from dashboard.kit import url
from dashboard.labels import link as labels
from dashboard.labels import page as labels_page


def _query(search: str) -> dict:
    return {k: v[0] for k, v in parse_qs(search.lstrip("?")).items()}


def test_the_matrix_link_reads_back_as_the_same_view() -> None:
    view = {"context": ["r", "index", 20], "x": [4.0, 12.0], "y": [2.5, 9.0], "epoch": 1}
    search = confusion.view_query("r", 1, "top1", "index", "log", ["row"], "b", 2, view, 7,
                                  [3, 11])  # fmt: skip
    back = view_from_query(_query(search))
    assert back == {
        "run": "r", "epoch": 1, "compare": "b", "compare_epoch": 2, "mode": "top1",
        "order": "index", "scale": "log", "options": ["row"], "x": (4.0, 12.0),
        "y": (2.5, 9.0), "cls": 7, "cell": (3, 11),
    }  # fmt: skip
    assert "cell=3%2C11" in search
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
           "x": "1,nan", "y": "5,1", "cls": "1e9", "cell": "3,-1"}  # fmt: skip
    view = view_from_query(bad)
    assert view["epoch"] is None and view["mode"] == "top5" and view["order"] == "index"
    assert view["options"] == ["row"] and view["x"] is None and view["y"] is None
    assert view["cls"] is None and view["cell"] is None
    for cell in ("3", "3,4,5", "a,b", "3,", ",4", "1.5,2", ""):
        assert view_from_query({"cell": cell})["cell"] is None, cell


def test_a_linked_cell_is_drilled_into_before_its_class_and_only_inside_the_matrix() -> None:
    assert confusion.linked_drill([3, 11], 7, 20) == (3, 11)
    assert confusion.linked_drill(None, 7, 20) == 7
    assert confusion.linked_drill([3, 20], 7, 20) == 7  # a cell of a bigger matrix: its class
    assert confusion.linked_drill([3, 20], 25, 20) is None
    assert confusion.linked_drill(None, None, 20) is None
    assert confusion.linked_drill([0, 0], None, 1) == (0, 0)


def test_the_map_link_reads_back_as_the_same_map() -> None:
    view = {"context": ["r"], "x": [-0.5, 0.25], "y": [0.0, 1.0], "epoch": 4}
    search = embedding_map.view_query("r", 4, "class", view)
    assert embedding_map.view_from_query(_query(search)) == {
        "run": "r", "epoch": 4, "colour": "class", "x": (-0.5, 0.25), "y": (0.0, 1.0),
    }  # fmt: skip
    whole = {"context": ["r"], "x": [-1.05, 1.05], "y": [-1.05, 1.05]}
    assert embedding_map.view_query("r", 4, "band", whole) == "?run=r&epoch=4"
    assert embedding_map.view_from_query({"colour": "pink"})["colour"] == "band"


def test_the_labels_link_reads_back_as_the_same_view() -> None:
    search = labels.view_query("r", 2, "normalized_margin", 4, 0, "band:dogs & cats", "train")
    assert labels.view_from_query(_query(search)) == {
        "run": "r", "epoch": 2, "method": "normalized_margin", "label": 4, "suggested": 0,
        "scope": "band:dogs & cats", "split": "train",
    }  # fmt: skip
    by_class = labels.view_query("r", 2, "self_confidence", None, 7, "class:7")
    assert labels.view_from_query(_query(by_class))["scope"] == "class:7"
    # the defaults leave no trace; the keys the confusion explorer's links use are these
    assert labels.view_query("r", 3, "self_confidence", None, None, "all") == "?run=r&epoch=3"
    assert labels.view_query("r", 3, None, None, None, None, "val") == "?run=r&epoch=3"
    assert labels.view_query("r", 3, None, 1, 2, None) == "?run=r&epoch=3&label=1&suggested=2"
    # every method the page offers is one a link can name
    assert [m for m, _ in labels_page.METHODS_SHOWN] == list(labels.METHODS)


def test_a_broken_labels_query_gives_the_default_view() -> None:
    bad = {"run": ["a", "b"], "epoch": "0", "method": "evil", "label": "-1",
           "suggested": "x", "scope": "class:nine", "split": "test"}  # fmt: skip
    assert labels.view_from_query(bad) == {
        "run": "a", "epoch": None, "method": "self_confidence", "label": None,
        "suggested": None, "scope": "all", "split": "val",
    }  # fmt: skip
    for text in ("band:", "bands:x", "class:-2", "class:", "", None, ["class:3", "all"]):
        assert labels.scope(text) == ("class:3" if isinstance(text, list) else "all"), text


def test_a_labels_link_is_kept_to_what_the_run_has() -> None:
    scopes = ["all", "band:dogs", "class:0", "class:1", "class:2"]
    wanted = {"run": "r", "epoch": 2, "label": 1, "suggested": 2, "scope": "band:dogs"}
    assert labels.restore(wanted, "r", [1, 2, 3], 3, scopes) == {
        "epoch": 2, "label": 1, "suggested": 2, "scope": "band:dogs",
    }  # fmt: skip
    # another run's link, or values this run does not have: the newest epoch, no filters
    nothing = {"epoch": 3, "label": None, "suggested": None, "scope": "all"}
    assert labels.restore(wanted, "other", [1, 2, 3], 3, scopes) == nothing
    beyond = {"run": "r", "epoch": 9, "label": 3, "suggested": 5, "scope": "band:cats"}
    assert labels.restore(beyond, "r", [1, 2, 3], 3, scopes) == nothing
    assert labels.restore(None, "r", [1, 2, 3], 3, scopes) == nothing
    # a link without a run applies to the run shown
    assert labels.restore({"run": None, "label": 0}, "r", [4], 3, scopes)["label"] == 0


def test_query_leaves_out_what_is_not_set() -> None:
    assert url.query([("a", None), ("b", ""), ("c", []), ("d", [1, 2])]) == "?d=1%2C2"
    assert url.query([]) == ""
    assert url.span("3,1") is None and url.span("1,3") == (1.0, 3.0)
    assert url.integer(["5", "6"]) == 5 and url.integer("x") is None
    assert url.pair("3,11") == (3, 11) and url.pair(["0,0", "1,1"]) == (0, 0)
    assert url.pair("3,11", high=10) is None and url.pair("-1,2") is None
