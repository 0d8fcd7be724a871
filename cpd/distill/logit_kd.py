"""Logit distillation for classification (Hinton et al. 2015)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["kl_per_sample", "logit_kd_loss", "LogitKD"]


def kl_per_sample(student: Tensor, teacher: Tensor, temperature: float = 1.0, dim: int = 1) -> Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))`` summed over the class axis.

    Args:
        student: logits with classes along ``dim``, e.g. ``(B, C)`` or ``(B, C, H, W)``.
        teacher: logits of the same shape.
        temperature: ``T > 0``.
        dim: the class axis.

    Returns:
        The divergence per sample (per pixel), i.e. the input shape without ``dim``.
        Not multiplied by ``T^2``.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student logits {tuple(student.shape)} and teacher logits "
            f"{tuple(teacher.shape)} must have the same shape"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_s = F.log_softmax(student / temperature, dim=dim)
    # log_target keeps the teacher in log space: exact where its probabilities underflow to 0.
    log_t = F.log_softmax(teacher.detach() / temperature, dim=dim)
    # what F.kl_div(log_s, log_t, log_target=True) computes, written out: kl_div has no
    # vmap batching rule, and per-sample criteria differentiate this under torch.func.vmap
    return (log_t.exp() * (log_t - log_s)).sum(dim=dim)


def logit_kd_loss(student: Tensor, teacher: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton KD loss: ``T^2 * mean_b KL(softmax(t_b / T) || softmax(s_b / T))``.

    The ``T^2`` factor keeps the gradient magnitude roughly independent of ``T``, so the
    mixing weight with the task loss does not need retuning when ``T`` changes. The teacher
    is detached: no gradient flows into it.

    Args:
        student: ``(B, C)`` student logits.
        teacher: ``(B, C)`` teacher logits.
        temperature: softmax temperature ``T``.

    Returns:
        A scalar tensor (batch mean).
    """
    return kl_per_sample(student, teacher, temperature).mean() * temperature**2


class LogitKD(nn.Module):
    """Module form of :func:`logit_kd_loss`; ``forward(student, teacher, targets=None)``.

    ``targets`` is accepted (and ignored) so that this and :class:`~cpd.distill.PixelKD`
    are interchangeable inside :class:`~cpd.distill.DistillLoss`.
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, student: Tensor, teacher: Tensor, targets: Tensor | None = None) -> Tensor:
        """``student``, ``teacher``: ``(B, C)`` logits. Returns a scalar."""
        return logit_kd_loss(student, teacher, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
