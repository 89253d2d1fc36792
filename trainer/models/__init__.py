"""Image classifiers by name: ``create_model("resnet18_v2", num_classes=1000, width=0.5)``."""

from trainer.models import resnet as _resnet  # noqa: F401  (registers the ResNet family)
from trainer.models.registry import UnknownModelError, create_model, list_models, register_model
from trainer.models.resnet import STEMS

__all__ = ["STEMS", "UnknownModelError", "create_model", "list_models", "register_model"]
