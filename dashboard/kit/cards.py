"""The image card every view lists validation images with: a thumbnail (or "no image") beside
a few lines of text. Sizes and spacing are in style.css (``.image-card``, ``.image-thumb``)."""

from __future__ import annotations

from typing import Any

from dash import html


def thumbnail(src: str | None, size: int = 96) -> html.Img | html.Div:
    """The image at ``size`` px (pixelated: 32 px demo images stay crisp), or "no image"."""
    if not src:
        return html.Div("no image", className=f"hint image-missing image-{size}")
    return html.Img(src=src, className=f"image-thumb image-{size}")


def image_card(src: str | None, body: list[Any], class_name: str, size: int = 96) -> html.Div:
    """One image card: ``class_name`` names the view's cards (tests and styles find them)."""
    return html.Div(
        [thumbnail(src, size), html.Div(body, className="image-card-body")],
        className=class_name,
    )
