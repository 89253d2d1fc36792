"""The penultimate features of a framework's model, for ``log_predictions(features=)``.

The rule (the Lightning and Hugging Face callbacks): the classifier head is the last
``torch.nn.Linear`` in ``model.modules()`` whose ``out_features`` is the number of classes
(a Hugging Face ``classifier``, torchvision's ``fc`` or ``heads.head``, the trainer's ``fc``); its
input, taken by a forward pre-hook while the model evaluates, is the image's features when it is
``[batch, F]``. A model without such a layer, or whose head takes another shape, is logged
without features after one warning (the run then has no embeddings); training goes on.
"""

from __future__ import annotations

from typing import Any

import torch

#: the warning when a model has no head the rule finds
NO_HEAD = (
    "{who}: no torch.nn.Linear with {classes} outputs (the classifier head) whose input is "
    "[batch, features] was found in the model, so no validation embeddings are stored (no "
    "similar images); predictions are logged as before"
)


def find_head(model: Any, num_classes: int) -> torch.nn.Module | None:
    """The last ``nn.Linear`` of ``model`` with ``num_classes`` outputs, or None."""
    heads = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m.out_features == num_classes
    ]
    return heads[-1] if heads else None


class FeatureTap:
    """A forward pre-hook on ``model``'s head while :meth:`start`-ed: each call's input is kept
    (detached, float32 on the CPU) until :meth:`take`."""

    def __init__(self, model: Any, num_classes: int) -> None:
        self.head = find_head(model, num_classes)
        self._handle: Any = None
        self._rows: list[torch.Tensor] = []

    @property
    def found(self) -> bool:
        return self.head is not None

    def start(self) -> None:
        if self.head is not None and self._handle is None:
            self._handle = self.head.register_forward_pre_hook(self._keep)
        self._rows = []

    def stop(self) -> None:
        """Remove the hook (before the model is copied for export) and forget what it kept."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._rows = []

    def clear(self) -> None:
        self._rows = []

    def _keep(self, module: Any, args: tuple) -> None:
        # evaluation only: a training step's features would cost a copy to the CPU each step
        if not module.training and args and isinstance(args[0], torch.Tensor):
            self._rows.append(args[0].detach().float().cpu())

    def take(self, rows: int | None = None) -> torch.Tensor | None:
        """The inputs kept since the last take, as one [N, F] tensor (None when there are none,
        they are not 2-D, or ``rows`` is given and neither all of them nor the last call's are
        that many); then forgets them."""
        kept, self._rows = self._rows, []
        if not kept or any(t.ndim != 2 or t.shape[1] != kept[0].shape[1] for t in kept):
            return None
        out = torch.cat(kept)
        if rows is None or len(out) == rows:
            return out
        # the head ran more than once on the batch (validation_step, then the callback's own
        # forward): the last run is the one whose logits were taken
        return kept[-1] if len(kept[-1]) == rows else None
