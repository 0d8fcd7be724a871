"""Callbacks: how Prune (and anything else) plugs into the fine-tuning loop.

A callback subclasses :class:`Callback` and overrides the hooks it needs; every hook
has a do-nothing default. The trainer calls them in list order, on **every rank**
(a hook that writes files should check ``trainer.is_main``).

Order of one training step::

    forward (student, and teacher under no_grad)  ->  loss  ->  backward
    -> gradients unscaled (fp16)  ->  on_batch(...)  ->  clip  ->  optimizer step

``on_batch`` sees the step's *unclipped* gradients in ``p.grad`` (already averaged
over ranks under DDP) and may return a replacement model. Then the trainer

1. moves the new model to the device and puts it in training mode (``.train()``);
2. builds a new optimizer for its parameters, carrying the state (moments, momentum)
   of every parameter whose name and shape are unchanged;
3. re-attaches the LR schedule at the *same* step (the schedule is a function of the
   step only, so the lr curve is unaffected);
4. wraps the new model in DDP again (which broadcasts rank 0's weights);
5. skips this batch's optimizer step: its gradients belong to the old parameters.
   The step still counts (data, schedule and step number advance), so step numbers
   mean the same thing with and without pruning; the next batch trains the new model.

Because every rank must end up with the same architecture, a replacement must be
decided identically on all ranks: at a step number known in advance, from scores
made identical with :func:`cpd.train.all_reduce_scores`.

Checkpoints: :meth:`Callback.checkpoint_extra` returns a JSON-serialisable dict that is
stored in the checkpoint's ``extra.json`` under :attr:`Callback.key`. On resume,
:meth:`Callback.on_resume` receives that dict back *before* the weights are loaded and
may return the rebuilt architecture (e.g. the original model with the stored Plan
applied), so that the saved weights fit.

A pruning callback skeleton (a complete, data-driven one with scores summed over ranks
is ``HessianPrune`` in ``cpd/train/__main__.py``)::

    class PruneAt(Callback):
        def __init__(self, build_model, at_step, ratio, example):
            self.build_model, self.at_step, self.ratio, self.example = build_model, at_step, ratio, example
            self.plans = []                       # JSON plans, applied in order

        def on_batch(self, trainer, step, inputs, targets, loss_fn):
            if step != self.at_step:
                return None
            with evaluating(trainer.model):   # cpd.inputs: a train-mode trace moves BN stats
                result = cpd.prune(trainer.model, self.example, ratio=self.ratio)
            self.plans.append(result.plan.to_json())
            return result.model               # the trainer puts it in train mode

        def checkpoint_extra(self, trainer):
            return {"plans": self.plans}

        def on_resume(self, trainer, extra):
            self.plans = list(extra.get("plans", []))
            if not self.plans:
                return None
            model = self.build_model()
            for plan in self.plans:
                model = apply_plan(model, Plan.from_json(plan))
            return model
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

if TYPE_CHECKING:
    from cpd.train.trainer import BatchLoss, Trainer

__all__ = ["Callback"]


class Callback:
    """Base class of trainer callbacks; override only the hooks you need.

    Attributes:
        key: the name of this callback's entry in a checkpoint's ``extra.json``
            (default: the class name). Two callbacks of one class need distinct keys.
    """

    @property
    def key(self) -> str:
        return type(self).__name__

    def on_train_start(self, trainer: Trainer) -> None:
        """After setup (and after resuming), before the first step of this process."""

    def on_batch(
        self, trainer: Trainer, step: int, inputs: Any, targets: tuple[Any, Tensor | None], loss_fn: BatchLoss
    ) -> nn.Module | None:
        """After backward, before the optimizer step of step ``step`` (0-based).

        Args:
            trainer: the trainer; ``trainer.model`` is the unwrapped student (not DDP).
            step: the index of this optimizer step (``trainer.step`` before it ends).
            inputs: the batch's model inputs, on the device (tensor, tuple or dict).
            targets: ``(labels, teacher_logits)``: the labels ``(B,)`` / ``(B, H, W)`` and
                the teacher's logits ``(B, C)`` / ``(B, C, h, w)`` (``None`` without a
                teacher: ``alpha == 0`` and no ``feature_layers``; with ``alpha == 0``
                ``loss_fn`` ignores them). Both have a leading batch dimension, so a
                per-sample criterion can slice them: ``crit.accumulate(trainer.model,
                inputs, targets, loss_fn)`` scores with the exact training objective.
            loss_fn: ``loss_fn(student_outputs, targets) -> scalar``, the training loss.

        Returns:
            ``None`` to go on, or a new model to train from here on (see the module doc).
        """
        return None

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        """After the optimizer step of ``step`` (weights updated, gradients cleared)."""

    def on_eval(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None:
        """After an evaluation (metrics all-reduced: identical on every rank)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last step, the final evaluation and the final checkpoint."""

    def checkpoint_extra(self, trainer: Trainer) -> dict[str, Any]:
        """JSON-serialisable state to store in each checkpoint (``{}``: nothing)."""
        return {}

    def on_resume(self, trainer: Trainer, extra: dict[str, Any]) -> nn.Module | None:
        """Restore from this callback's :meth:`checkpoint_extra` dict of the checkpoint.

        Called before the checkpoint's weights are loaded; return a model with the
        checkpoint's architecture if it differs from ``trainer.model`` (``None``: same).
        """
        return None
