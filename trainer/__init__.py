"""Epochscope trainer: trains image classifiers and streams what it learns to a run directory."""
