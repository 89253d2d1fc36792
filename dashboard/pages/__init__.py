"""Dash pages: one module per URL (register_page in each). Each only registers its URL with its
view package's layout (``confusion.py`` two: /confusion and /classes); the view is the package."""
