"""The embedding map (``/map``): an epoch's validation images laid out in 2-D, drawn with
datashader. ``service`` answers the page from a Run (through ``render`` and ``figure``), ``jobs``
computes layouts on a background thread of the worker, ``link`` keeps its state in the URL;
``page`` holds the layout and the callbacks (pages/embedding_map.py registers the URL)."""
