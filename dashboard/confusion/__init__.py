"""The confusion explorer (``/confusion``, ``/classes``): an epoch's confusion matrix drawn with
datashader, its per-class table, drill-downs and exports. ``service`` answers the page from a
Run (through ``data``, ``render``, ``figure``, ``view``, ``drilldown``, ``difference``),
``link`` keeps its state in the URL, ``export`` makes PNGs and GIFs; ``layout`` lays out the
components and ``page`` holds the callbacks (pages/confusion.py registers both URLs)."""
