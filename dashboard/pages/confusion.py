"""``/confusion`` and ``/classes``: the confusion explorer (dashboard/confusion/), matrix first
or per-class table first."""

import dash

from dashboard.confusion.page import classes_layout, layout

dash.register_page(
    __name__,
    path="/confusion",
    name="Confusion",
    title="Epochscope: confusion explorer",
    layout=layout,
)
dash.register_page(
    "classes",
    path="/classes",
    name="Classes",
    title="Epochscope: per-class accuracy",
    layout=classes_layout,
)
