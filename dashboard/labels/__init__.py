"""The labels view (``/labels``): likely mislabeled images and calibration of a run. ``views``
builds the cards, the reliability diagram and the CSV from a Run; ``page`` lays them out and
holds the callbacks (pages/labels.py registers the URL)."""
