"""Runs made elsewhere, written as Epochscope run directories: ``python -m epochscope import``.

- ``timm``: timm's train.py output folder (summary.csv, args.yaml) and optionally a top-k file
  from its inference.py, for the confusion matrix of that checkpoint.
- ``tensorboard``: a TensorBoard log folder's scalars as curves (event files parsed here with the
  standard library; no TensorFlow, no tensorboard package).
Neither imports its framework.
"""


class NotThatKind(ValueError):
    """The folder is not what the importer reads (said in one line, exit status 2)."""
