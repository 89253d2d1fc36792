"""``/map``: the embedding map (dashboard/embedding_map/)."""

import dash

from dashboard.embedding_map.page import layout

dash.register_page(
    __name__, path="/map", name="Map", title="Epochscope: embedding map", layout=layout
)
