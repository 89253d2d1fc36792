"""``/labels``: the labels view (dashboard/labels/)."""

import dash

from dashboard.labels.page import layout

dash.register_page(
    __name__,
    path="/labels",
    name="Labels",
    title="Epochscope: likely mislabeled, calibration",
    layout=layout,
)
