"""``/data-map``: the training set's data map (dashboard/data_map/)."""

import dash

from dashboard.data_map.page import layout

dash.register_page(
    __name__,
    path="/data-map",
    name="Data map",
    title="Epochscope: data map of the training set",
    layout=layout,
)
