"""The classifier view (``/classify``): photos dropped in, each one's top-5 at an epoch.
``results`` decodes, classifies and lays out the results; ``page`` holds the layout and the
callbacks (pages/classify.py registers the URL). The onnxruntime sessions and bounded uploads
are dashboard/inference.py, shared with the API and the kit's similar-images strip."""
