"""The report's own style sheet and script (report.css, report.js beside this module), inlined
into every report: nothing is fetched when it is opened."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def css() -> str:
    return files("epochscope.report").joinpath("report.css").read_text("utf-8")


@cache
def js() -> str:
    return files("epochscope.report").joinpath("report.js").read_text("utf-8")
