"""Thin bridges from training frameworks to ``epochscope.init``: each module imports its
framework, so ``import epochscope`` never does.

- ``epochscope.integrations.lightning.EpochscopeCallback`` (PyTorch Lightning)
- ``epochscope.integrations.transformers.EpochscopeTrainerCallback`` (Hugging Face Trainer)
"""
