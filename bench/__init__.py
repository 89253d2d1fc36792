"""Epochscope benchmarks: ``python -m bench`` (``make bench``)."""
