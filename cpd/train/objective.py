"""The training objective of :class:`~cpd.train.Trainer`: task loss, logit KD, feature KD.

``alpha * KD + (1 - alpha) * task + feature_weight * mean_l MSE_l``, where the feature
term compares the outputs of ``config.feature_layers`` in the student and the teacher
at the teacher channels the student kept (:class:`~cpd.distill.FeatureTaps`).

With ``config.extra_view`` set (e.g. ``"cutmix"``), a term on an extra view of the batch
is added (:mod:`cpd.distill.views`): the view is trained like the batch, with the same
``alpha`` mix of KD against the teacher's outputs on it and the task loss against the
batch's label maps mixed by the same box. Class labels cannot be mixed that way: a
classification view gets the KD term alone (and needs ``alpha > 0``). Batch and view go
through the teacher and the student as one batch of ``2B``, so DDP and batch norm see a
single forward; pruning criteria still score on the labelled batch alone.

The feature term is part of the *training* loss only. :meth:`Objective.loss_fn`, which
pruning criteria differentiate (per sample, under ``torch.func.vmap`` for some), stays
``alpha * KD + (1 - alpha) * task``: its targets are ``(labels, teacher_logits)``,
which a criterion can slice per sample; captured feature maps are not.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from cpd.distill.feature_kd import add_feature_term
from cpd.distill.feature_taps import FeatureTaps
from cpd.distill.mix import mix_losses
from cpd.distill.views import CutMixBox, make_view
from cpd.inputs import call_model
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
        self.extra_view = config.extra_view
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

    def step(self, student: nn.Module, inputs: Any, labels: Any) -> tuple[Tensor, dict[str, float], Tensor | None]:
        """Forward ``inputs`` through the teacher and ``student`` and return the training loss.

        Call it inside :meth:`capturing` (and the trainer's autocast).

        Returns:
            ``(loss, parts, teacher_logits)``: the scalar to backpropagate, its parts as
            floats (``view`` too, with an extra view) and the teacher's logits of
            ``inputs`` alone (``None`` without a teacher), which pruning criteria need.
        """
        made = make_view(self.extra_view, inputs)
        batch = inputs if made is None else torch.cat([inputs, made[0]])
        teacher_logits = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = logits_of(call_model(self.teacher, batch)).detach()
        outputs = call_model(student, batch)
        if made is None:
            return (*self.loss_and_parts(outputs, (labels, teacher_logits)), teacher_logits)
        n = inputs.shape[0]
        logits = logits_of(outputs)
        main_teacher = teacher_logits[:n] if teacher_logits is not None else None
        loss, parts = self.loss_and_parts(logits[:n], (labels, main_teacher))
        mixed = _mixed_labels(made[1], labels, inputs)  # None for class labels
        if self.distill is not None:
            assert teacher_logits is not None  # a distilling objective always has a teacher (see __init__)
            # Trained like the batch; class labels cannot be mixed by a box, so they get the KD term alone.
            extra = (self.distill(logits[n:], teacher_logits[n:], mixed)[0] if mixed is not None
                     else self.distill.alpha * self.distill.kd(logits[n:], teacher_logits[n:], None))
        elif mixed is not None:
            extra = self.task.loss(logits[n:], mixed)
        else:
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"extra_view without distillation (alpha=0) labels the view with the batch's label "
                             f"maps mixed by the same box; these labels {got} are not (B, H, W) maps like the "
                             f"images {tuple(inputs.shape)}; set alpha > 0 to label it with the teacher, or "
                             "extra_view='none'")
        parts["view"] = float(extra.detach())
        loss = loss + extra
        parts["total"] = float(loss.detach())
        return loss, parts, main_teacher

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


def _mixed_labels(box: CutMixBox, labels: Any, inputs: Tensor) -> Tensor | None:
    """``labels`` ``(B, H, W)`` mixed by ``box``, or ``None`` unless they are label maps of the inputs' size."""
    if not isinstance(labels, Tensor) or labels.dim() < 2 or labels.shape[-2:] != inputs.shape[-2:]:
        return None
    return box.paste(labels)
