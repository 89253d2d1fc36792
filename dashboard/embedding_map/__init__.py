"""The embedding map: an epoch's validation images laid out in 2-D, drawn with datashader."""
