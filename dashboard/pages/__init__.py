"""Dash pages: one module per URL (register_page in each)."""
