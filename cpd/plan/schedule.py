"""Iterative pruning: score, remove a fraction, repeat; usable inside any training loop.

The schedule works on the groups of the *original* model. Between steps the
criterion accumulates scores on whatever loss the caller differentiates (task,
distillation, or both). Each step removes more channels until the target is
reached at the last step: a channel ratio grows linearly, a MACs/params/latency
fraction falls linearly. Removed channels are held at zero (mask mode, as the
paper does); :meth:`IterativePruner.finalize` removes them physically at the end.

For a latency target the cost model of :mod:`cpd.plan.latency_cost` is fitted
once, on the dense model at construction. Intermediate steps trust it; the last
step times its candidates for real (a masked model is no faster than the dense
one, so candidates are timed as physically pruned copies), and
:meth:`IterativePruner.finalize` times the final model against the dense one.

Typical use::

    pruner = IterativePruner(model, example_inputs, macs=0.5, steps=4)
    for step, (x, y) in enumerate(loader):
        pruner.accumulate(model, x, y, loss_fn)        # before optimizer.step()
        train_step(model, x, y)
        pruner.hold(model)                             # keep removed channels at 0
        if (step + 1) % interval == 0 and not pruner.done:
            pruner.step(model)
    result = pruner.finalize(model)                    # smaller dense model + plan
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn as nn

import cpd.api as api
from cpd.apply.mask import removed_positions, zero_channels
from cpd.apply.verify import apply_checked
from cpd.inputs import ExampleInputs
from cpd.plan.latency_search import (
    DEFAULT_TOL,
    LatencySearch,
    LatencySetup,
    check_latency_args,
    select_latency,
)
from cpd.plan.latency_timer import LatencyTimer
from cpd.plan.measure import Measurer
from cpd.plan.plan import Plan
from cpd.plan.select import Keep, bisect_prefix, ranking, select_global, select_uniform
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
    """

    def __init__(
        self, model: nn.Module, example_inputs: ExampleInputs, *, ratio: float | None = None,
        macs: float | None = None, params: float | None = None,
        latency: float | None = None, latency_batch_size: int = 1,
        latency_tol: float = DEFAULT_TOL, steps: int = 1,
        importance: str = "hessian", criterion_options: dict[str, Any] | None = None,
        head_dim: bool = False, round_to: int | None = None, max_ratio: float = 0.95,
        ignore: tuple[str, ...] = (),
    ) -> None:
        api._check_args(ratio, macs, params, latency)
        check_latency_args(None, latency_batch_size, latency_tol)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        given = {"ratio": ratio, "macs": macs, "params": params, "latency": latency}
        self.kind = next(k for k, v in given.items() if v is not None)
        self.target = float(given[self.kind])  # type: ignore[arg-type]
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
        self._measure = (Measurer(model, example_inputs, self.comb, self.kind)
                         if self.kind in ("macs", "params") else None)
        self._latency: LatencySetup | None = None
        self._latency_search: dict[str, Any] | None = None
        if self.kind == "latency":
            self._latency = LatencySetup.build(model, example_inputs, self.comb, self.groups,
                                               batch_size=latency_batch_size,
                                               round_to=round_to, max_ratio=max_ratio)
            self._latency.timer.model = None  # type: ignore[assignment]  # set per use
        # Hook applied to the scores before each step; distributed training sets it to
        # an all-reduce so that every rank removes the same channels.
        self.reduce: Callable[[dict[int, torch.Tensor]], dict[int, torch.Tensor]] | None = None

    @property
    def done(self) -> bool:
        return self.step_index >= self.steps

    def accumulate(self, model: nn.Module, inputs: Any, targets: Any,
                   loss_fn: Callable[[Any, Any], torch.Tensor]) -> None:
        """Add one batch to the importance scores (needs no gradients of the caller)."""
        if self.criterion.requires_data:
            self.criterion.accumulate(model, inputs, targets, loss_fn)

    def restore(self, keep: Keep, step_index: int, history: list[dict[str, float]]) -> None:
        """Resume state saved from :attr:`keep`, :attr:`step_index` and :attr:`history`."""
        self.keep, self.step_index, self.history = keep, step_index, history
        self._positions = removed_positions(self.comb, self.keep)

    def _scores(self) -> dict[int, torch.Tensor]:
        raw = self.criterion.scores()
        if self.reduce is not None:
            raw = self.reduce(raw)
        scores = {g: s.clone() for g, s in raw.items()}
        # Channels already removed stay removed: rank them below everything else.
        for gid, kept in self.keep.items():
            s = scores[gid]
            gone = torch.ones(len(s), dtype=torch.bool)
            gone[kept] = False
            floor = float(s[~gone].min()) if (~gone).any() else 0.0
            s[gone] = floor - 1.0 - s[gone].abs()
        return scores

    def step(self, model: nn.Module) -> dict[str, float]:
        """Remove the next fraction of channels (masking ``model`` in place)."""
        if self.done:
            raise RuntimeError("all pruning steps are done; call finalize()")
        self.step_index += 1
        frac = self.step_index / self.steps
        scores = self._scores()
        if self.kind == "ratio":
            goal = self.target * frac
            keep = select_uniform(self.groups, scores, goal, self.round_to, self.max_ratio)
            achieved = goal
        elif self.kind == "latency":
            goal = 1.0 - (1.0 - self.target) * frac
            keep, achieved = self._latency_step(model, scores, goal)
        else:
            goal = 1.0 - (1.0 - self.target) * frac
            assert self._measure is not None
            keep, achieved = select_global(self.groups, scores, self._measure, goal,
                                           self.round_to, self.max_ratio)
        # Never bring back a channel removed earlier (selection is monotone).
        for gid, kept in self.keep.items():
            keep[gid] = sorted(set(keep.get(gid, kept)) & set(kept))
        self.keep = {g: k for g, k in keep.items() if len(k) < self.comb.group(g).size}
        self._positions = removed_positions(self.comb, self.keep)
        self.hold(model)
        self.criterion.reset()
        rec = {"step": float(self.step_index), "goal": goal, "achieved": float(achieved),
               "removed": float(sum(self.comb.group(g).size - len(k) for g, k in self.keep.items()))}
        self.history.append(rec)
        return rec

    def _latency_step(self, model: nn.Module, scores: dict[int, torch.Tensor],
                      goal: float) -> tuple[Keep, float]:
        """Latency-aware ranking; cost model only, plus real timings at the last step."""
        lat = self._latency
        assert lat is not None
        order = ranking(self.groups, scores, cost=lat.channel_costs)
        # channels removed by earlier steps go first, so every prefix contains them
        gone = {(g, c) for g, kept in self.keep.items()
                for c in set(range(self.comb.group(g).size)) - set(kept)}
        order = [o for o in order if o in gone] + [o for o in order if o not in gone]
        if not self.done:
            _, keep, val = bisect_prefix(self.groups, order, lat.cost, goal, self.round_to,
                                         self.max_ratio, lo=len(gone))
            return keep, val
        lat.timer.model = model  # dense (masked) model: same architecture as the original
        try:
            keep, info = select_latency(self.groups, order, lat.cost, lat.timer, goal,
                                        tol=self.latency_tol, round_to=self.round_to,
                                        max_ratio=self.max_ratio, lo=len(gone))
        finally:
            lat.timer.model = None  # type: ignore[assignment]
        self._latency_search = lat.meta(info)
        return keep, float(info.achieved if info.achieved is not None else goal)

    def hold(self, model: nn.Module) -> None:
        """Zero the removed channels again (call after each optimizer step)."""
        zero_channels(model, self._positions)

    def plan(self) -> Plan:
        return Plan.from_comb(self.comb, self.keep, importance=self.importance,
                              **{f"target_{self.kind}": self.target}, steps=self.steps)

    def finalize(self, model: nn.Module, inplace: bool = False) -> "api.PruneResult":
        """Physically remove the masked channels; returns a :class:`cpd.PruneResult`."""
        base = count(model, self.example_inputs)
        dense = copy.deepcopy(model) if self.kind == "latency" and inplace else model
        pruned, plan, bad = apply_checked(model, self.example_inputs, self.plan(),
                                          self.comb.output_shapes, inplace)
        new = count(pruned, self.example_inputs)
        plan.meta.update(macs=new[0] / max(base[0], 1), params=new[1] / max(base[1], 1),
                         rolled_back=bad, history=copy.deepcopy(self.history))
        if self._latency is not None:
            plan.meta.update(self._final_latency(dense, pruned))
        return api.PruneResult(pruned, plan, self.comb, bad, (base[0], new[0]), (base[1], new[1]))

    def _final_latency(self, dense: nn.Module, pruned: nn.Module) -> dict[str, Any]:
        """Time the final model against the dense one: the achieved latency fraction."""
        lat = self._latency
        assert lat is not None
        old = lat.timer
        timer = LatencyTimer(dense, self.example_inputs, self.comb,
                             batch_size=old.batch_size)
        t = timer.time_model(pruned)
        meta = dict(self._latency_search
                    or lat.meta(LatencySearch(target=self.target, tol=self.latency_tol)))
        search = dict(meta.get("latency_search", {}))
        search.update(timings=int(search.get("timings", 0)) + 1,
                      met=t.fraction <= self.target * (1 + self.latency_tol))
        meta.update(latency=t.fraction, latency_ms=[t.base_ms, t.ms], latency_search=search)
        return meta

