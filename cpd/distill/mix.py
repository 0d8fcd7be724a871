"""Mixing the distillation loss with the task loss."""

from __future__ import annotations

from torch import Tensor

__all__ = ["mix_losses"]


def mix_losses(kd: Tensor, task: Tensor, alpha: float) -> Tensor:
    """``alpha * kd + (1 - alpha) * task``.

    ``alpha = 1`` is pure distillation (no labels needed), ``alpha = 0`` plain fine-tuning.
    A zero weight drops its term entirely rather than multiplying it by 0, so a nan or
    inf in an unused loss cannot leak into the total.

    Args:
        kd: scalar distillation loss.
        task: scalar task loss (e.g. cross-entropy).
        alpha: weight in ``[0, 1]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 1.0:
        return kd
    if alpha == 0.0:
        return task
    return alpha * kd + (1.0 - alpha) * task
