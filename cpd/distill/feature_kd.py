"""Feature distillation between a pruned student and its unpruned teacher."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FeaturePair", "add_feature_term", "feature_kd_loss", "mean_feature_kd"]

#: ``(student_feature, teacher_feature, kept_channel_indices_or_None)``, optionally with
#: the channel axis as a fourth element (default 1: ``(B, C, H, W)`` maps).
FeaturePair = (
    tuple[Tensor, Tensor, "Tensor | Sequence[int] | None"]
    | tuple[Tensor, Tensor, "Tensor | Sequence[int] | None", int]
)


def feature_kd_loss(
    student_feat: Tensor,
    teacher_feat: Tensor,
    kept: Tensor | Sequence[int] | None = None,
    dim: int = 1,
) -> Tensor:
    """MSE between a student feature map and the teacher's, restricted to kept channels.

    Pruning removes channels, so the student's channels are a subset of the teacher's,
    in the same order: ``teacher_feat.index_select(dim, kept)`` is exactly the teacher
    feature the student channel ``i`` was cut from. No projection layer is needed (or
    wanted: it would let the student drift from the teacher's basis).

    Two kinds of student are accepted:

    * physically pruned: ``C_kept`` channels along ``dim``;
    * masked (pruning simulated by holding removed channels at zero): the teacher's
      full width ``C_teacher``. The student is then sliced at ``kept`` too, so the
      zeroed channels are neither pulled toward the teacher nor counted in the mean.

    Args:
        student_feat: e.g. ``(B, C_kept, H, W)`` (or ``(B, C_teacher, H, W)`` masked)
            for a CNN, or ``(B, N, D_kept)`` tokens with ``dim=-1``.
        teacher_feat: same shape except ``C_teacher`` along ``dim``; detached here.
        kept: indices of the kept channels into the teacher's ``dim`` axis (``C_kept`` of
            them), or ``None`` when no channel was pruned at this point.
        dim: the channel axis.

    Returns:
        A scalar tensor: mean squared error over all compared elements, computed in at
        least float32 (bf16 / fp16 features under autocast are upcast).
    """
    teacher_feat = teacher_feat.detach()
    if kept is not None:
        index = torch.as_tensor(kept, dtype=torch.long, device=teacher_feat.device)
        masked = student_feat.shape == teacher_feat.shape and student_feat.shape[dim] != index.numel()
        teacher_feat = teacher_feat.index_select(dim, index)
        if masked:
            student_feat = student_feat.index_select(dim, index.to(student_feat.device))
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f"student feature {tuple(student_feat.shape)} does not match the teacher feature "
            f"at the kept channels {tuple(teacher_feat.shape)}; check `kept` and `dim`"
        )
    # Half-precision MSE of large activations loses most of its mantissa: sum in float32.
    dtype = torch.promote_types(student_feat.dtype, torch.float32)
    return F.mse_loss(student_feat.to(dtype), teacher_feat.to(device=student_feat.device, dtype=dtype))


def mean_feature_kd(features: Sequence[FeaturePair]) -> Tensor:
    """Mean of :func:`feature_kd_loss` over ``(student, teacher, kept[, dim])`` tuples.

    ``dim`` defaults to 1 (conv maps) when a tuple has three elements. Every layer
    weighs the same, whatever its size: each term is already a per-element mean.
    """
    if not features:
        raise ValueError("mean_feature_kd needs at least one (student, teacher, kept) feature pair")
    return torch.stack([feature_kd_loss(*pair) for pair in features]).mean()


def add_feature_term(total: Tensor, features: Sequence[FeaturePair], weight: float,
                     parts: dict[str, float]) -> Tensor:
    """``total + weight * mean_feature_kd(features)``; logs the term as ``parts["feature"]``.

    With no features ``total`` is returned as it is; with ``weight == 0`` the term is
    logged but not added (to watch it without training on it).
    """
    if not features:
        return total
    feat = mean_feature_kd(features)
    parts["feature"] = float(feat.detach())
    return total + weight * feat if weight > 0 else total
