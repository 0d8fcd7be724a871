"""The training objective of :class:`~cpd.train.Trainer`: task loss, logit KD, feature KD.

``alpha * KD + (1 - alpha) * task + feature_weight * mean_l MSE_l``, where the feature
term compares the outputs of ``config.feature_layers`` in the student and the teacher
at the teacher channels the student kept (:class:`~cpd.distill.FeatureTaps`).

The feature term is part of the *training* loss only. :meth:`Objective.loss_fn`, which
pruning criteria differentiate (per sample, under ``torch.func.vmap`` for some), stays
``alpha * KD + (1 - alpha) * task``: its targets are ``(labels, teacher_logits)``,
which a criterion can slice per sample; captured feature maps are not.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from torch import Tensor, nn

from cpd.distill.feature_kd import add_feature_term
from cpd.distill.feature_taps import FeatureTaps
from cpd.distill.mix import mix_losses
from cpd.tasks.outputs import logits_of
from cpd.tasks.task import Task
from cpd.train.config import TrainConfig

__all__ = ["Objective"]


class Objective:
    """The loss of one training step, built from a :class:`TrainConfig`.

    Args:
        task: the task (its loss and its KD).
        config: ``alpha``, ``temperature``, ``feature_layers``, ``feature_weight``.
        teacher: the frozen teacher; needed when ``alpha > 0`` or ``feature_layers``
            is set (it is put in eval mode and frozen here).

    Attributes:
        teacher: the teacher, or None when the loss needs none.
        taps: the feature taps (None without ``feature_layers``); the trainer attaches
            each new student with :meth:`attach`, a pruning callback sets their kept
            channels (``taps.set_kept``).
    """

    def __init__(self, task: Task, config: TrainConfig, teacher: nn.Module | None) -> None:
        needs = [w for w, on in (("alpha > 0", config.alpha > 0), ("feature_layers", bool(config.feature_layers)))
                 if on]
        if needs and teacher is None:
            raise ValueError(f"{' and '.join(needs)} distil from a teacher, but teacher is None; pass teacher= "
                             "or set alpha=0 and feature_layers=[]")
        self.task = task
        self.teacher = teacher.eval().requires_grad_(False) if needs and teacher is not None else None
        self.distill = (task.distill_loss(config.alpha, config.temperature, config.feature_weight)
                        if config.alpha > 0 else None)
        self.feature_weight = config.feature_weight
        self.taps = (FeatureTaps(config.feature_layers, self.teacher)
                     if config.feature_layers and self.teacher is not None else None)

    def attach(self, student: nn.Module) -> None:
        """Tap ``student`` (called for every model the trainer installs)."""
        if self.taps is not None:
            self.taps.attach(student)

    def capturing(self) -> AbstractContextManager[Any]:
        """Wrap the step's forwards *and* :meth:`loss_and_parts` in this (features are
        captured inside and dropped on exit)."""
        return self.taps.capture() if self.taps is not None else nullcontext()

    def loss_and_parts(self, outputs: Any, targets: tuple[Any, Tensor | None]) -> tuple[Tensor, dict[str, float]]:
        """The training loss of ``outputs`` against ``(labels, teacher_logits)``, and its parts
        (``task``, ``kd``, ``feature``, ``total`` as floats)."""
        labels, teacher_logits = targets
        features = self.taps.pairs() if self.taps is not None and teacher_logits is not None else []
        if self.distill is not None and teacher_logits is not None:
            return self.distill(outputs, teacher_logits, labels, features=features)
        loss = self.task.loss(outputs, labels)
        parts = {"task": float(loss.detach())}
        loss = add_feature_term(loss, features, self.feature_weight, parts)
        parts["total"] = float(loss.detach())
        return loss, parts

    def loss_fn(self, outputs: Any, targets: tuple[Any, Tensor | None]) -> Tensor:
        """The scalar pruning criteria differentiate: ``alpha * KD + (1 - alpha) * task``.

        Computed without the float() calls that log the parts: those are ``.item()``
        syncs, which ``torch.func.vmap`` (used by per-sample criteria) cannot trace.
        """
        labels, teacher_logits = targets
        if self.distill is None or teacher_logits is None:
            return self.task.loss(outputs, labels)
        student = logits_of(outputs)
        kd = self.distill.kd(student, teacher_logits, labels)
        return mix_losses(kd, self.distill.task_loss(student, labels), self.distill.alpha)
