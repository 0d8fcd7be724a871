"""Per-pixel logit distillation for semantic segmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cpd.distill.logit_kd import kl_per_sample

__all__ = ["DenseKD", "pixel_kd_loss", "PixelKD", "resize_to"]


def resize_to(logits: Tensor, size: tuple[int, ...]) -> Tensor:
    """``(B, C, h, w)`` logits bilinearly resized to ``size`` ``(H, W)`` (unchanged if equal).

    What :func:`cpd.tasks.resize_logits` does; that one cannot be imported here, because
    ``cpd.tasks`` imports the KD losses when it loads.
    """
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def pixel_kd_loss(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor | None = None,
    temperature: float = 1.0,
    ignore_index: int = 255,
) -> Tensor:
    """``T^2 *`` mean over valid pixels of ``KL(softmax(t_p / T) || softmax(s_p / T))``.

    Both logit maps are bilinearly resized to the label size ``(H, W)`` first, so a
    student and a teacher predicting at different strides can be compared, and the loss
    is measured where the task loss and mIoU are. Pixels whose label is ``ignore_index``
    do not count (the teacher is not trusted there and the metric never looks there).

    Args:
        student: ``(B, C, h, w)`` student logits.
        teacher: ``(B, C, h', w')`` teacher logits (detached here).
        targets: ``(B, H, W)`` labels, or ``None`` to average over all pixels at the
            teacher's resolution.
        temperature: softmax temperature ``T``.
        ignore_index: label value of pixels to leave out.

    Returns:
        A scalar tensor; 0 (still connected to the graph) if every pixel is ignored.
    """
    if student.ndim != 4 or teacher.ndim != 4:
        raise ValueError(
            f"expected (B, C, h, w) logits, got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}"
        )
    if targets is None:
        size = (int(teacher.shape[-2]), int(teacher.shape[-1]))
    else:
        size = (int(targets.shape[-2]), int(targets.shape[-1]))
    kl = kl_per_sample(resize_to(student, size), resize_to(teacher, size), temperature)  # (B, H, W)
    if targets is None:
        return kl.mean() * temperature**2
    valid = targets.to(kl.device) != ignore_index
    if kl.shape != valid.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match logits batch {tuple(kl.shape)}")
    # clamp instead of branching on the count: no host sync, so torch.func.vmap can trace it
    # (per-sample criteria differentiate this loss per sample); all ignored gives 0
    n_valid = valid.sum().clamp(min=1)
    return torch.where(valid, kl, kl.new_zeros(())).sum() / n_valid * temperature**2


class DenseKD(nn.Module):
    """Module form of a dense KD loss ``loss(student, teacher, targets, temperature, ignore_index)``;
    ``forward(student, teacher, targets=None)``. Subclasses set ``loss`` and
    ``default_temperature`` (used when ``temperature`` is None)."""

    loss: staticmethod
    default_temperature: float

    def __init__(self, temperature: float | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.temperature = float(self.default_temperature if temperature is None else temperature)
        self.ignore_index = int(ignore_index)

    def forward(self, student: Tensor, teacher: Tensor, targets: Tensor | None = None) -> Tensor:
        """``student``/``teacher``: ``(B, C, h, w)``; ``targets``: ``(B, H, W)`` or None."""
        return self.loss(student, teacher, targets, self.temperature, self.ignore_index)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, ignore_index={self.ignore_index}"


class PixelKD(DenseKD):
    """Module form of :func:`pixel_kd_loss` (per-pixel KD over classes, default ``T = 1``)."""

    loss = staticmethod(pixel_kd_loss)
    default_temperature = 1.0
