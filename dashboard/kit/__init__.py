"""The view kit: the pieces every view is drawn with (image cards and thumbnails, the
zoomable datashader image view, the run picker's rule, the epoch slider). Views import the
kit and ``epochscope``, never one another."""
