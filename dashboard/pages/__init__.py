"""Dash pages: one module per URL (register_page in each). The labels, classify and training
pages only register their URL and their view package's layout; the view is the package."""
