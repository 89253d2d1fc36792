"""A name -> constructor registry in the style of timm's ``@register_model``."""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

ModelFn = Callable[..., nn.Module]

_MODELS: dict[str, ModelFn] = {}


class UnknownModelError(ValueError):
    """Raised for an architecture name that nothing registered."""


def register_model(fn: ModelFn) -> ModelFn:
    """Register ``fn`` under its own name; a second registration of a name is an error."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__module__})")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS, key=_natural_key)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its entry point, e.g.
    ``create_model("resnet18_v2", num_classes=10, width=0.25, stem="small")`` (the ResNets'
    ``stem``: ``imagenet`` or ``small``; an unknown one is a ValueError naming the choices)."""
    try:
        fn = _MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown architecture {name!r}; choose from: {', '.join(list_models())}"
        ) from None
    return fn(**kwargs)


def _natural_key(name: str) -> tuple:
    # resnet18_v2 before resnet101_v2: group by family and version, then depth as a number
    m = re.fullmatch(r"([a-z]+)(\d+)_(\w+)", name)
    return (m[1], m[3], int(m[2])) if m else (name, "", 0)
