"""The combined objective of the Distill step: KD + task loss (+ optional feature KD)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from cpd.distill.feature_kd import FeaturePair, add_feature_term
from cpd.distill.mix import mix_losses
from cpd.tasks.outputs import logits_of

__all__ = ["DistillLoss", "FeaturePair", "KDFn", "TaskLossFn"]

#: ``kd(student_logits, teacher_logits, targets_or_None) -> scalar``, e.g. LogitKD / PixelKD.
KDFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
#: ``task_loss(student_logits, targets) -> scalar``, e.g. cross-entropy.
TaskLossFn = Callable[[Tensor, Tensor], Tensor]


class DistillLoss(nn.Module):
    """``alpha * kd + (1 - alpha) * task + feature_weight * mean(feature_kd)``.

    The caller computes the teacher's outputs itself, with the teacher in ``eval()``
    mode and under ``torch.no_grad()`` (the teacher is frozen; batch-norm statistics
    must not move, and no activations need to be kept for backward)::

        teacher.eval()
        with torch.no_grad():
            teacher_out = teacher(images)
        loss, parts = distill_loss(student(images), teacher_out, targets)
        loss.backward()

    Outputs may be anything :func:`cpd.tasks.logits_of` understands (tensor, dict,
    tuple, Hugging Face ``ModelOutput``).

    Args:
        kd: the logit distillation loss, ``kd(student_logits, teacher_logits, targets)``
            (:class:`~cpd.distill.LogitKD` or :class:`~cpd.distill.PixelKD`).
        task_loss: ``task_loss(student_logits, targets)``; ``None`` for pure distillation.
        alpha: weight of the KD term in ``[0, 1]``.
        feature_weight: weight of the feature term (used only when features are passed).
    """

    def __init__(
        self,
        kd: KDFn,
        task_loss: TaskLossFn | None = None,
        alpha: float = 0.5,
        feature_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if feature_weight < 0:
            raise ValueError(f"feature_weight must be non-negative, got {feature_weight}")
        self.kd = kd
        self.task_loss = task_loss
        self.alpha = float(alpha)
        self.feature_weight = float(feature_weight)

    def forward(
        self,
        student_outputs: Any,
        teacher_outputs: Any,
        targets: Tensor | None = None,
        features: Sequence[FeaturePair] = (),
    ) -> tuple[Tensor, dict[str, float]]:
        """Compute the loss.

        Args:
            student_outputs: the student's forward output (logits ``(B, C)`` or
                ``(B, C, h, w)`` inside).
            teacher_outputs: the teacher's output, computed under no_grad in eval mode.
            targets: labels ``(B,)`` or ``(B, H, W)``; with ``None`` (or no ``task_loss``)
                the task term is dropped and the KD term gets full weight.
            features: optional ``(student_feat, teacher_feat, kept[, dim])`` tuples for
                :func:`~cpd.distill.feature_kd_loss` (``dim`` defaults to 1), e.g.
                :meth:`cpd.distill.FeatureTaps.pairs`; their mean is the feature term.

        Returns:
            ``(total, parts)``: the scalar loss to backpropagate, and a dict of floats with
            ``"kd"``, ``"task"`` (when computed), ``"feature"`` (when features are given)
            and ``"total"``, for logging.
        """
        student = logits_of(student_outputs)
        teacher = logits_of(teacher_outputs)
        kd = self.kd(student, teacher, targets)
        parts: dict[str, float] = {"kd": float(kd.detach())}
        if targets is not None and self.task_loss is not None:
            task = self.task_loss(student, targets)
            parts["task"] = float(task.detach())
            total = mix_losses(kd, task, self.alpha)
        else:
            total = kd
        total = add_feature_term(total, features, self.feature_weight, parts)
        parts["total"] = float(total.detach())
        return total, parts

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, feature_weight={self.feature_weight}"
