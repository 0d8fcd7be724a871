"""Iterative pruning: score, remove a fraction, repeat; usable inside any training loop.

The schedule works on the groups of the *original* model. Between steps the
criterion accumulates scores on whatever loss the caller differentiates (task,
distillation, or both). Each step removes more channels until the target is
reached at the last step: a channel ratio grows linearly, a MACs/params/latency
fraction falls linearly. Two modes give the same architecture for the same scores:

* ``mode="mask"`` (default, as the paper does): removed channels are held at zero
  (:meth:`IterativePruner.hold`) and :meth:`IterativePruner.finalize` removes them
  physically at the end.
* ``mode="physical"``: every step removes its channels physically, in place (the
  module object stays, its parameters are replaced by smaller ones: rebuild the
  optimizer). Later steps score the smaller model; :mod:`cpd.plan.physical` re-combs
  it and maps its groups and scores back to the original groups. Training gets
  cheaper as the model shrinks; optimizer state of sliced parameters is lost.

Selection, targets (fractions of the original) and the cumulative :class:`Plan` are
always in the original model's index space in both modes, so the plan re-applies
to the original architecture.

For a latency target the cost model of :mod:`cpd.plan.latency_cost` is fitted
once, on the dense model at construction. Intermediate steps trust it; the last
step times its candidates for real (a masked model is no faster than the dense
one, so candidates are timed as physically pruned copies), and
:meth:`IterativePruner.finalize` times the final model against the dense one (in
physical mode a copy of the original model, kept for that purpose); see
:mod:`cpd.plan.schedule_latency`.

Typical use::

    pruner = IterativePruner(model, example_inputs, macs=0.5, steps=4)
    for step, (x, y) in enumerate(loader):
        pruner.accumulate(model, x, y, loss_fn)        # before optimizer.step()
        train_step(model, x, y)
        pruner.hold(model)                             # keep removed channels at 0
        if (step + 1) % interval == 0 and not pruner.done:
            pruner.step(model)
    result = pruner.finalize(model)                    # smaller dense model + plan

With ``mode="physical"`` the loop is the same except that ``hold`` is not needed and
the optimizer must be rebuilt after each ``pruner.step(model)`` (``model`` shrank in
place; its parameters are new tensors).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Callable

import torch
import torch.nn as nn

import cpd.api as api
from cpd.apply.mask import removed_positions, zero_channels
from cpd.apply.verify import apply_checked
from cpd.inputs import ExampleInputs
from cpd.plan.latency_search import DEFAULT_TOL, check_latency_args
from cpd.plan.measure import Measurer, channel_costs
from cpd.plan.physical import PhysicalState, check_mode
from cpd.plan.plan import Plan
from cpd.plan.schedule_latency import ScheduleLatency
from cpd.plan.select import Keep, select_global, select_uniform
from cpd.plan.select_uniform import check_allocation, select_uniform_to
from cpd.report.counting import count
from cpd.scores.registry import get_criterion


class IterativePruner:
    """Prunes toward one target (``ratio``, ``macs``, ``params`` or ``latency``) in
    ``steps`` steps.

    Args:
        model: the dense model being trained (it is traced once here; for a latency
            target it is also timed here, on its device, in eval mode).
        example_inputs: an input the model runs on (for tracing and measuring).
        steps: number of pruning steps.
        importance: criterion name; ``criterion_options`` go to its constructor.
        head_dim, round_to, max_ratio, ignore: as :func:`cpd.prune`.
        latency_batch_size, latency_tol: as :func:`cpd.prune`.
        mode: ``"mask"`` (zero removed channels, remove them in :meth:`finalize`) or
            ``"physical"`` (remove them in place at every :meth:`step`); see the module
            docstring. Physical mode with a latency target keeps a copy of ``model``
            to time candidates against.
        cost: with a ``macs`` or ``params`` target, ``"macs"`` or ``"params"`` ranks
            channels by importance per unit of that cost saved (each group-normalised
            score divided by its group's relative cost per channel, measured once on
            the dense model), as the authors divide by the layer's activation count.
            ``None`` (default): importance relative to the group's mean alone.
        allocation: with a ``macs`` or ``params`` target, ``"global"`` (default) ranks
            the channels of all groups together, so scores decide how much each group
            loses; ``"uniform"`` removes the same fraction from every group, the
            smallest that meets the step's goal, and scores pick the channels within
            each group (:mod:`cpd.plan.select_uniform`).
    """

    def __init__(
        self, model: nn.Module, example_inputs: ExampleInputs, *, ratio: float | None = None,
        macs: float | None = None, params: float | None = None,
        latency: float | None = None, latency_batch_size: int = 1,
        latency_tol: float = DEFAULT_TOL, steps: int = 1,
        importance: str = "hessian", criterion_options: dict[str, Any] | None = None,
        head_dim: bool = False, round_to: int | None = None, max_ratio: float = 0.95,
        ignore: tuple[str, ...] = (), mode: str = "mask", cost: str | None = None,
        allocation: str = "global",
    ) -> None:
        self.kind = api._check_args(ratio, macs, params, latency)
        check_latency_args(None, latency_batch_size, latency_tol)
        self.mode = check_mode(mode)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        given = {"ratio": ratio, "macs": macs, "params": params, "latency": latency}
        self.target = float(given[self.kind])  # type: ignore[arg-type]
        self.allocation = check_allocation(allocation, self.kind, cost)
        self.latency_tol = latency_tol
        self.steps, self.round_to, self.max_ratio = steps, round_to, max_ratio
        self.example_inputs = example_inputs
        self.comb = api.comb(model, example_inputs, ignore=ignore)
        self.groups = self.comb.prunable(head_dim=head_dim)
        self.criterion = get_criterion(importance, **(criterion_options or {}))
        self.criterion.prepare(model, self.groups)
        self.importance = importance
        self.keep: Keep = {}
        self.step_index = 0
        self.history: list[dict[str, float]] = []
        self._positions: dict = {}
        self._physical = (PhysicalState(self.comb, self.groups, example_inputs, tuple(ignore))
                          if mode == "physical" else None)
        # Physical steps shrink ``model`` in place: whatever measures against the
        # original must not hold a reference to it.
        self._base_counts = count(model, example_inputs) if self._physical else None
        self._measure = (Measurer(model, example_inputs, self.comb, self.kind)
                         if self.kind in ("macs", "params") else None)
        if self._physical and self._measure is not None and self._measure.model is model:
            self._measure.model = copy.deepcopy(model)  # it fell back from meta to the model
        self.costs = self._channel_costs(model, cost)
        self._latency = (ScheduleLatency(model, example_inputs, self.comb, self.groups,
                                         batch_size=latency_batch_size, round_to=round_to,
                                         max_ratio=max_ratio, target=self.target,
                                         tol=latency_tol, physical=self._physical is not None)
                         if self.kind == "latency" else None)
        # Hook applied to the scores before each step; distributed training sets it to
        # an all-reduce so that every rank removes the same channels.
        self.reduce: Callable[[dict[int, torch.Tensor]], dict[int, torch.Tensor]] | None = None

    def _channel_costs(self, model: nn.Module, cost: str | None) -> dict[int, float] | None:
        """What removing one channel of each group saves (fraction of the original)."""
        if cost is None:
            return None
        if cost not in ("macs", "params"):
            raise ValueError(f"cost must be 'macs', 'params' or None, got {cost!r}")
        if self.kind not in ("macs", "params"):
            raise ValueError(f"cost={cost!r} ranks against a macs or params target, not {self.kind}")
        measure = self._measure if cost == self.kind else Measurer(model, self.example_inputs, self.comb, cost)
        assert measure is not None
        return channel_costs(measure, self.groups)

    @property
    def done(self) -> bool:
        return self.step_index >= self.steps

    @property
    def rolled_back(self) -> list[int]:
        """Groups whose removal broke the forward at a physical step (kept whole since)."""
        return list(self._physical.rolled_back) if self._physical else []

    def accumulate(self, model: nn.Module, inputs: Any, targets: Any,
                   loss_fn: Callable[[Any, Any], torch.Tensor]) -> None:
        """Add one batch to the importance scores (needs no gradients of the caller)."""
        if self.criterion.requires_data:
            self.criterion.accumulate(model, inputs, targets, loss_fn)

    def restore(self, keep: Keep, step_index: int, history: list[dict[str, float]], *,
                model: nn.Module | None = None, rolled_back: Sequence[int] = ()) -> None:
        """Resume state saved from :attr:`keep`, :attr:`step_index`, :attr:`history`
        (and, in physical mode, :attr:`rolled_back`).

        In physical mode ``model`` is the pruned model to go on with (the original
        architecture with ``plan()`` of the restored state applied); the criterion is
        prepared on it.
        """
        self.keep, self.step_index, self.history = keep, step_index, history
        if self._physical is None:
            self._positions = removed_positions(self.comb, self.keep)
            return
        self._physical.rolled_back = [int(g) for g in rolled_back]
        if keep:  # else the model is still the original: the groups are the same
            if model is None:
                raise ValueError("restoring a physical schedule needs model= (the original "
                                 "architecture with the restored plan applied)")
            self._physical.rebind(model, self.keep, self.criterion)

    def _scores(self) -> dict[int, torch.Tensor]:
        raw = self.criterion.scores()
        if self._physical is not None:  # scores of the current groups -> original space
            raw = self._physical.scores(raw, self.keep)
        if self.reduce is not None:
            raw = self.reduce(raw)
        scores = {g: s.clone() for g, s in raw.items()}
        # Channels already removed stay removed: they score -inf, so every ranking puts
        # them first and group means skip them (a finite "below the minimum" value
        # depends on the scores' scale: with hessian scores > 1 it ranked removed
        # channels among live ones, and the monotone fix-up below then removed more than
        # the step's goal).
        for gid, kept in self.keep.items():
            if gid not in scores:
                continue  # a fixed group (physical mode): not selectable
            s = scores[gid]
            gone = torch.ones(len(s), dtype=torch.bool)
            gone[kept] = False
            s[gone] = float("-inf")
        return scores

    def step(self, model: nn.Module) -> dict[str, float]:
        """Remove the next fraction of channels: masked in place, or (physical mode)
        removed in place, after which ``model``'s parameters are new tensors."""
        if self.done:
            raise RuntimeError("all pruning steps are done; call finalize()")
        self.step_index += 1
        frac = self.step_index / self.steps
        scores = self._scores()
        fixed = self._physical.fixed if self._physical else set()
        groups = [g for g in self.groups if g.id not in fixed]
        held = {g: k for g, k in self.keep.items() if g in fixed}  # stays as it is
        measure = self._measure
        if held and measure is not None:
            base = measure
            measure = lambda k: base({**held, **k})  # targets count held groups
        if self.kind == "ratio":
            goal = self.target * frac
            keep = select_uniform(groups, scores, goal, self.round_to, self.max_ratio)
            achieved = goal
        elif self.kind == "latency":
            goal = 1.0 - (1.0 - self.target) * frac
            assert self._latency is not None
            keep, achieved = self._latency.select(model, groups, held, self.keep, scores,
                                                  goal, last=self.done)
        else:
            goal = 1.0 - (1.0 - self.target) * frac
            assert measure is not None
            if self.allocation == "uniform":
                keep, achieved, _ = select_uniform_to(groups, scores, measure, goal,
                                                      self.round_to, self.max_ratio)
            else:
                keep, achieved = select_global(groups, scores, measure, goal,
                                               self.round_to, self.max_ratio, cost=self.costs)
        keep.update(held)
        chosen = {g: list(k) for g, k in keep.items() if len(k) < self.comb.group(g).size}
        # Never bring back a channel removed earlier (selection is monotone).
        for gid, kept in self.keep.items():
            keep[gid] = sorted(set(keep.get(gid, kept)) & set(kept))
        keep = {g: k for g, k in keep.items() if len(k) < self.comb.group(g).size}
        if self._physical is None:
            self.keep = keep
            self._positions = removed_positions(self.comb, self.keep)
            self.hold(model)
            self.criterion.reset()
        else:
            self.keep = self._physical.apply(model, self.keep, keep)
            if not self.done:  # the next step scores the smaller model
                self._physical.rebind(model, self.keep, self.criterion)  # resets the scores
        if self._measure is not None and self.keep != chosen:
            achieved = self._measure(self.keep)  # what the kept channels really cost
        rec = {"step": float(self.step_index), "goal": goal, "achieved": float(achieved),
               "removed": float(sum(self.comb.group(g).size - len(k) for g, k in self.keep.items()))}
        self.history.append(rec)
        return rec

    def hold(self, model: nn.Module) -> None:
        """Zero the removed channels again (call after each optimizer step; a no-op in
        physical mode, where they are gone)."""
        zero_channels(model, self._positions)

    def plan(self) -> Plan:
        """The cumulative plan, in the original model's index space."""
        return Plan.from_comb(self.comb, self.keep, importance=self.importance,
                              **{f"target_{self.kind}": self.target}, steps=self.steps,
                              mode=self.mode)

    def finalize(self, model: nn.Module, inplace: bool = False) -> "api.PruneResult":
        """Physically remove the masked channels; returns a :class:`cpd.PruneResult`.

        In physical mode ``model`` is already pruned: it is returned (a copy unless
        ``inplace``) with the cumulative plan.
        """
        if self._physical is not None:
            return self._finalize_physical(model, inplace)
        base = count(model, self.example_inputs)
        dense = copy.deepcopy(model) if self.kind == "latency" and inplace else model
        pruned, plan, bad = apply_checked(model, self.example_inputs, self.plan(),
                                          self.comb.output_shapes, inplace)
        new = count(pruned, self.example_inputs)
        plan.meta.update(macs=new[0] / max(base[0], 1), params=new[1] / max(base[1], 1),
                         rolled_back=bad, history=copy.deepcopy(self.history))
        if self._latency is not None:
            plan.meta.update(self._latency.final(dense, pruned))
        return api.PruneResult(pruned, plan, self.comb, bad, (base[0], new[0]), (base[1], new[1]))

    def _finalize_physical(self, model: nn.Module, inplace: bool) -> "api.PruneResult":
        assert self._base_counts is not None
        base = self._base_counts
        pruned = model if inplace else copy.deepcopy(model)
        new = count(pruned, self.example_inputs)
        plan, bad = self.plan(), self.rolled_back
        plan.meta.update(macs=new[0] / max(base[0], 1), params=new[1] / max(base[1], 1),
                         rolled_back=bad, history=copy.deepcopy(self.history))
        if self._latency is not None:
            assert self._latency.dense is not None
            plan.meta.update(self._latency.final(self._latency.dense, pruned))
        return api.PruneResult(pruned, plan, self.comb, bad, (base[0], new[0]), (base[1], new[1]))
