"""Channel-wise distillation for dense prediction (Shu et al., ICCV 2021, "CWD").

Per-pixel KD (:mod:`cpd.distill.pixel_kd`) matches, at every pixel, the teacher's
distribution over *classes*. Channel-wise KD matches, for every class map, the
teacher's distribution over *pixels*: each ``(H, W)`` logit map is turned into a
spatial softmax, and the student's map is pulled towards the teacher's by KL. It
transfers where each class is salient rather than how confident each pixel is, and the
paper reports it ahead of per-pixel KD on Cityscapes and ADE20K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cpd.distill.pixel_kd import DenseKD, resize_to

__all__ = ["channel_kd_loss", "ChannelKD"]


def channel_kd_loss(
    student: Tensor,
    teacher: Tensor,
    targets: Tensor | None = None,
    temperature: float = 4.0,
    ignore_index: int = 255,
) -> Tensor:
    """``T^2 *`` mean over images and classes of ``KL(softmax_HW(t_c / T) || softmax_HW(s_c / T))``.

    Both logit maps are bilinearly resized to the label size ``(H, W)`` first (as in
    :func:`~cpd.distill.pixel_kd_loss`). Pixels labelled ``ignore_index`` are left out of
    the spatial softmax, so a void region neither attracts nor repels probability mass;
    an image whose every pixel is ignored does not count.

    Args:
        student: ``(B, C, h, w)`` student logits.
        teacher: ``(B, C, h', w')`` teacher logits (detached here).
        targets: ``(B, H, W)`` labels, or ``None`` to use every pixel at the teacher's
            resolution.
        temperature: softmax temperature ``T`` (the paper uses 4 on logits).
        ignore_index: label value of pixels to leave out.

    Returns:
        A scalar tensor; 0 (still connected to the graph) if every pixel is ignored.
    """
    if student.ndim != 4 or teacher.ndim != 4:
        raise ValueError(f"expected (B, C, h, w) logits, got student {tuple(student.shape)} and teacher "
                         f"{tuple(teacher.shape)}")
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} "
                         "must have the same batch and class sizes")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    size = tuple(int(d) for d in (teacher if targets is None else targets).shape[-2:])
    s = resize_to(student, size).flatten(2) / temperature  # (B, C, H*W)
    t = resize_to(teacher.detach(), size).flatten(2) / temperature
    if targets is None:
        valid = torch.ones(s.shape[0], 1, s.shape[2], dtype=torch.bool, device=s.device)
    else:
        if tuple(targets.shape) != (s.shape[0], *size):
            raise ValueError(f"targets {tuple(targets.shape)} do not match logits batch {(s.shape[0], *size)}")
        valid = (targets.to(s.device) != ignore_index).flatten(1).unsqueeze(1)  # (B, 1, H*W)
    # an image with no valid pixel would softmax over nothing (NaN): let it see every
    # pixel in the softmax and give it weight 0 below
    has_valid = valid.any(dim=-1, keepdim=True)  # (B, 1, 1)
    valid = valid | ~has_valid
    neg_inf = torch.finfo(s.dtype).min
    log_s = F.log_softmax(s.masked_fill(~valid, neg_inf), dim=-1)
    log_t = F.log_softmax(t.masked_fill(~valid, neg_inf), dim=-1)
    # zero the excluded pixels before the product so no -inf - -inf appears
    log_s = torch.where(valid, log_s, log_s.new_zeros(()))
    log_t = torch.where(valid, log_t, log_t.new_zeros(()))
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)  # (B, C)
    weight = has_valid.squeeze(-1).to(kl.dtype)  # (B, 1)
    # clamp, not a branch on the count: no host sync, so torch.func.vmap can trace it
    n = (weight.sum() * kl.shape[1]).clamp(min=1)
    return (kl * weight).sum() / n * temperature**2


class ChannelKD(DenseKD):
    """Module form of :func:`channel_kd_loss` (KD over pixels per class, default ``T = 4``)."""

    loss = staticmethod(channel_kd_loss)
    default_temperature = 4.0
