"""The training view (``/``): live curves, progress, hyper-parameters and the charts of what
a run gets wrong. ``figures`` draws the curves from events, ``live`` answers the poll,
``hparams`` compares settings, ``mistakes`` charts a Run's mistakes; ``page`` holds the layout
and the callbacks (pages/training.py registers the URL)."""
