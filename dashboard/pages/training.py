"""``/``: the training view (dashboard/training/)."""

import dash

from dashboard.training.page import layout

dash.register_page(__name__, path="/", name="Training", title="Epochscope: training", layout=layout)
