"""Epochscope dashboard: live training curves, confusion explorer and photo classifier (Dash)."""
