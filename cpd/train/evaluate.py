"""Evaluation: the task metric over a loader, summed over ranks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cpd.inputs import call_model, to_device
from cpd.tasks.outputs import logits_of
from cpd.tasks.task import Task
from cpd.train.amp import autocast

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], task: Task, device: torch.device, amp: str = "none") -> dict[str, Any]:
    """Run ``model`` in eval mode over ``loader`` and return ``task.metric().compute()``.

    Call it on every rank with that rank's shard: the metric's counts are all-reduced,
    so every rank returns the same, whole-dataset numbers.

    Args:
        model: the unwrapped model (not DDP: no gradient sync is wanted here).
        loader: batches of ``(inputs, targets)``; inputs a tensor ``(B, ...)``, tuple or dict.
        task: gives the metric.
        device: where the model lives.
        amp: autocast mode (CUDA only).

    Returns:
        e.g. ``{"top1": 93.1, "top5": 99.8}`` or ``{"miou": ..., "pixel_acc": ..., ...}``.
    """
    was_training = model.training
    model.eval()
    metric = task.metric()
    try:
        for inputs, targets in loader:
            inputs = to_device(inputs, device)
            with autocast(device, amp):
                outputs = call_model(model, inputs)
            # float(): bf16 logits would make ties (and so top-k) depend on rounding.
            metric.update(logits_of(outputs).float(), targets.to(device))
    finally:
        model.train(was_training)
    metric.all_reduce()
    return metric.compute()
