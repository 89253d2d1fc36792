"""The analysis over a run's arrays: pure functions of numpy arrays (no files, no Dash).

``epochscope.Run`` calls them and caches their results; the dashboard renders them.
"""
