"""Feature distillation between a pruned student and its unpruned teacher."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["feature_kd_loss"]


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

    Args:
        student_feat: e.g. ``(B, C_kept, H, W)`` for a CNN, or ``(B, N, D_kept)`` tokens
            with ``dim=-1``.
        teacher_feat: same shape except ``C_teacher`` along ``dim``; detached here.
        kept: indices of the kept channels into the teacher's ``dim`` axis (``C_kept`` of
            them), or ``None`` when no channel was pruned at this point.
        dim: the channel axis.

    Returns:
        A scalar tensor: mean squared error over all elements.
    """
    teacher_feat = teacher_feat.detach()
    if kept is not None:
        index = torch.as_tensor(kept, dtype=torch.long, device=teacher_feat.device)
        teacher_feat = teacher_feat.index_select(dim, index)
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f"student feature {tuple(student_feat.shape)} does not match the teacher feature "
            f"at the kept channels {tuple(teacher_feat.shape)}; check `kept` and `dim`"
        )
    return F.mse_loss(student_feat, teacher_feat.to(student_feat.dtype))
