"""Pruning inside training: the trainer callback that runs an :class:`IterativePruner`.

Schedule (optimizer steps): scoring starts at ``start``; every ``interval`` steps a
pruning step removes the next share of channels. Importance is scored on the
trainer's own loss (KD + task). Two modes (the same channels for the same scores):

* ``mode="mask"`` (default, as the paper does): removed channels are held at zero
  after each optimizer step; the last pruning step removes them physically and hands
  the smaller model to the trainer, which rebuilds its optimizer and goes on
  fine-tuning with distillation.
* ``mode="physical"``: every pruning step hands a physically smaller model to the
  trainer, so the rest of the schedule trains (and scores) a cheaper model. The cost:
  at every pruning step the trainer skips that batch's optimizer step, and the
  optimizer state (AdamW moments, SGD momentum) of every parameter that lost
  channels starts afresh; parameters whose shape did not change keep theirs (see
  :func:`cpd.train.optim.transfer_state`).

Feature KD: when the trainer taps layers (``TrainConfig.feature_layers``), every
pruning step (and the final removal, and a resume) tells its taps which teacher
channels each tapped layer kept, so the student is compared with the right ones.

Checkpoints store the cumulative keep-set (original index space); on resume in
physical mode the pruned architecture is rebuilt from ``base`` plus that plan, so
the checkpoint's weights load into it.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from cpd.apply.apply import apply_plan
from cpd.distill.feature_axes import kept_channels
from cpd.inputs import evaluating
from cpd.plan.physical import check_mode
from cpd.plan.plan import Plan
from cpd.plan.schedule import IterativePruner
from cpd.train.callbacks import Callback
from cpd.train.distributed import all_reduce_scores


class PruneDuringTraining(Callback):
    """Comb once, then prune to a target in ``steps`` steps while training.

    Args:
        base: the unpruned architecture (its weights are not used), rebuilt on resume.
        example_inputs: an input to trace and to measure MACs on.
        steps, interval, start: the pruning schedule in optimizer steps.
        score_batches: batches scored before each pruning step (default: the whole
            interval, as the paper does).
        evaluate_fn: optional ``model -> metric``, recorded in the history after each
            pruning step (the metric-against-MACs curve of the report).
        mode: ``"mask"`` or ``"physical"`` (see the module docstring).
        pruner_options: ``ratio=`` / ``macs=`` / ``params=`` and the other
            :class:`~cpd.plan.schedule.IterativePruner` options.
    """

    def __init__(self, base: nn.Module, example_inputs: Any, *, steps: int = 4,
                 interval: int = 50, start: int = 0, score_batches: int | None = None,
                 evaluate_fn: Callable[[nn.Module], float] | None = None,
                 mode: str = "mask", **pruner_options: Any) -> None:
        self.mode = check_mode(mode)
        self.base = copy.deepcopy(base)
        self.evaluate_fn = evaluate_fn  # metric of the masked (or pruned) model after each step
        self.example = example_inputs
        self.steps, self.interval, self.start = steps, interval, start
        # Score only on the last ``score_batches`` batches of each interval (all: None);
        # per-sample scoring costs a few training steps per batch.
        self.score_batches = interval if score_batches is None else min(score_batches, interval)
        self.options = pruner_options
        self.pruner: IterativePruner | None = None
        self.plan: Plan | None = None
        self.result: Any = None  # the PruneResult of the physical removal

    @property
    def last_step(self) -> int:
        """The optimizer step at which the channels are removed physically."""
        return self.start + self.steps * self.interval - 1

    def _make(self, model: nn.Module) -> IterativePruner:
        with evaluating(model):  # tracing must not touch BatchNorm statistics
            p = IterativePruner(model, self.example, steps=self.steps, mode=self.mode,
                                **self.options)
        p.reduce = all_reduce_scores  # every rank removes the same channels
        return p

    def on_train_start(self, trainer: Any) -> None:
        if self.pruner is None and self.plan is None:
            self.pruner = self._make(trainer.model)

    def on_batch(self, trainer: Any, step: int, inputs: Any, targets: Any,
                 loss_fn: Callable[[Any, Any], torch.Tensor]) -> nn.Module | None:
        if self.plan is not None or self.pruner is None or step < self.start:
            return None
        pos = (step - self.start) % self.interval  # 0 .. interval-1 within this interval
        if pos >= self.interval - self.score_batches:
            self.pruner.accumulate(trainer.model, inputs, targets, loss_fn)
        if pos != self.interval - 1:
            return None
        # Physical mode prunes a copy: the trainer carries optimizer state over from
        # the untouched old parameters to the unchanged ones of the new model.
        model = copy.deepcopy(trainer.model) if self.mode == "physical" else trainer.model
        with evaluating(model):  # re-combing must not touch BatchNorm statistics
            rec = self.pruner.step(model)
            if self.evaluate_fn is not None:
                rec["metric"] = float(self.evaluate_fn(model))
            if self.pruner.done:
                self.result = self.pruner.finalize(model, inplace=self.mode == "physical")
        if not self.pruner.done:
            self._sync_taps(trainer, self.pruner.plan())
            return model if self.mode == "physical" else None
        self.plan = self.result.plan  # without the groups that verification rolled back
        self._sync_taps(trainer, self.plan)
        return self.result.model

    def _sync_taps(self, trainer: Any, plan: Plan) -> None:
        """Tell the trainer's feature taps (if any) the teacher channels kept under ``plan``."""
        taps = getattr(trainer, "feature_taps", None)
        if taps is not None:
            taps.set_kept(kept_channels(plan, self.base, taps.layers))

    def on_step_end(self, trainer: Any, step: int) -> None:
        if self.plan is None and self.pruner is not None:
            self.pruner.hold(trainer.model)

    def checkpoint_extra(self, trainer: Any) -> dict[str, Any]:
        if self.plan is not None:
            return {"plan": self.plan.to_json()}
        if self.pruner is None:
            return {}
        return {"keep": {str(g): k for g, k in self.pruner.keep.items()},
                "step_index": self.pruner.step_index, "history": self.pruner.history,
                "rolled_back": self.pruner.rolled_back}

    def on_resume(self, trainer: Any, extra: dict[str, Any]) -> nn.Module | None:
        if "plan" in extra:
            self.plan = Plan.from_json(extra["plan"])
            self._sync_taps(trainer, self.plan)
            return apply_plan(self.base, self.plan)
        # trainer.model is the original architecture here (the trainer was built with it)
        self.pruner = self._make(trainer.model)
        if not extra:
            return None
        keep = {int(g): k for g, k in extra["keep"].items()}
        rolled_back = [int(g) for g in extra.get("rolled_back", [])]
        model = None
        if self.mode == "physical" and keep:
            # the architecture the checkpoint's weights were saved from (they load next)
            model = apply_plan(trainer.model, Plan.from_comb(self.pruner.comb, keep))
        self.pruner.restore(keep, int(extra["step_index"]), list(extra["history"]),
                            model=model, rolled_back=rolled_back)
        self._sync_taps(trainer, self.pruner.plan())
        return model
