"""``/classify``: the classifier view (dashboard/classify/)."""

import dash

from dashboard.classify.page import layout

dash.register_page(
    __name__, path="/classify", name="Classify", title="Epochscope: classify", layout=layout
)
