"""The labels view's state in its URL: what a link names (read back checked) and the link of
what the page shows (defaults left out), as pure functions of the page's values.

``label`` and ``suggested`` are the keys the confusion explorer's drill-down links already
use; ``scope`` is the reliability diagram's group option (``all``, ``band:NAME``,
``class:I``), checked against the run's options when its dropdown is filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboard.kit import url
from epochscope.labels import METHODS

DEFAULT_METHOD = "self_confidence"
WHOLE_SET = "all"
#: which images are ranked: the validation set's (by the epoch's predictions) or the training
#: set's (by the training statistics of the epochs up to it)
SPLITS = ("val", "train")


def scope(value: Any) -> str:
    """A reliability scope from the query: ``all``, ``band:NAME`` or ``class:I``, else ``all``."""
    text = url.first(value) or ""
    kind, _, rest = text.partition(":")
    if kind == "band" and rest:
        return text
    if kind == "class" and (index := url.integer(rest)) is not None:
        return f"class:{index}"
    return WHOLE_SET


def view_from_query(query: dict[str, Any]) -> dict[str, Any]:
    """The view a link names (each value checked; what is missing or wrong: the default)."""
    return {
        "run": url.first(query.get("run")),
        "epoch": url.integer(query.get("epoch"), 1),
        "method": url.choice(query.get("method"), METHODS, DEFAULT_METHOD),
        "label": url.integer(query.get("label")),
        "suggested": url.integer(query.get("suggested")),
        "scope": scope(query.get("scope")),
        "split": url.choice(query.get("split"), SPLITS, "val"),
    }


def restore(
    wanted: dict[str, Any] | None,
    run: str,
    epochs: Sequence[int],
    num_classes: int,
    scopes: Sequence[str],
) -> dict[str, Any]:
    """What the page shows of ``run`` when it opens: the link's epoch (else the newest), given
    and suggested classes and reliability scope, each kept only when the run has it; a link
    that names another run gives the defaults."""
    asked = wanted if wanted and wanted.get("run") in (run, None) else {}
    classes = range(num_classes)
    return {
        "epoch": asked.get("epoch") if asked.get("epoch") in epochs else epochs[-1],
        "label": asked.get("label") if asked.get("label") in classes else None,
        "suggested": asked.get("suggested") if asked.get("suggested") in classes else None,
        "scope": asked.get("scope") if asked.get("scope") in scopes else WHOLE_SET,
    }


def view_query(
    run: str | None,
    epoch: int | None,
    method: str | None,
    label: int | None,
    suggested: int | None,
    scope: str | None,
    split: str | None = "val",
) -> str:
    """The link of what the page shows: run and epoch, the filters set, the method, the
    reliability scope and the split unless they are the defaults."""
    return url.query(
        [
            ("run", run),
            ("epoch", epoch),
            ("method", None if method in (None, DEFAULT_METHOD) else method),
            ("label", label),
            ("suggested", suggested),
            ("scope", None if scope in (None, WHOLE_SET) else scope),
            ("split", None if split in (None, "val") else split),
        ]
    )
