"""The training set's data map (``/data-map``): every training image at the variability and
confidence of the probability the training step gave its label, drawn with datashader."""
