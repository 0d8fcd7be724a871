"""The latency target of an iterative schedule (see :mod:`cpd.plan.schedule`).

The cost model of :mod:`cpd.plan.latency_cost` is fitted once, on the dense model,
when the schedule is built. Intermediate steps trust it; the last step times its
candidates for real as physically pruned copies of a model of the original
architecture (the masked model in mask mode, a kept copy of the original in
physical mode, whose model shrinks), and the final model is timed against it.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn as nn

from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group
from cpd.inputs import ExampleInputs
from cpd.plan.latency_search import LatencySearch, LatencySetup, select_latency
from cpd.plan.latency_timer import LatencyTimer
from cpd.plan.select import Keep, bisect_prefix, ranking


class ScheduleLatency:
    """Cost model, timer and search record of one schedule's latency target.

    Args:
        model: the dense model (profiled here, on its device, in eval mode).
        example_inputs, comb, groups: the schedule's.
        batch_size, round_to, max_ratio, target, tol: as :func:`cpd.prune`.
        physical: keep a copy of ``model`` to time against (its model will shrink).
    """

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs, comb: CombResult,
                 groups: list[Group], *, batch_size: int, round_to: int | None,
                 max_ratio: float, target: float, tol: float, physical: bool) -> None:
        self.setup = LatencySetup.build(model, example_inputs, comb, groups,
                                        batch_size=batch_size, round_to=round_to,
                                        max_ratio=max_ratio)
        self.setup.timer.model = None  # type: ignore[assignment]  # set per use
        self.example_inputs, self.comb = example_inputs, comb
        self.round_to, self.max_ratio, self.target, self.tol = round_to, max_ratio, target, tol
        self.search: dict[str, Any] | None = None
        self.dense: nn.Module | None = None
        if physical:
            self.dense = copy.deepcopy(model)
            if self.setup.cost._work_model is model:  # no meta copy was possible
                self.setup.cost._work_model = self.dense

    def select(self, model: nn.Module, groups: list[Group], held: Keep, keep: Keep,
               scores: dict[int, torch.Tensor], goal: float, last: bool) -> tuple[Keep, float]:
        """Latency-aware ranking of ``groups`` toward ``goal``; ``keep`` is what earlier
        steps kept and ``held`` the groups that stay as they are (physical mode)."""
        lat = self.setup
        cost: Callable[[Keep], Any] = lat.cost
        timer: Callable[[Keep], Any] = lat.timer
        if held:  # fixed groups count with what they keep
            cost = lambda k: lat.cost({**held, **k})
            timer = lambda k: lat.timer({**held, **k})
        order = ranking(groups, scores, cost=lat.channel_costs)
        # channels removed by earlier steps go first, so every prefix contains them
        sizes = {g.id: g.size for g in groups}
        gone = {(g, c) for g, kept in keep.items() if g in sizes
                for c in set(range(sizes[g])) - set(kept)}
        order = [o for o in order if o in gone] + [o for o in order if o not in gone]
        if not last:
            _, new, val = bisect_prefix(groups, order, cost, goal, self.round_to,
                                        self.max_ratio, lo=len(gone))
            return new, val
        lat.timer.model = self.dense if self.dense is not None else model
        try:
            new, info = select_latency(groups, order, cost, timer, goal, tol=self.tol,
                                       round_to=self.round_to, max_ratio=self.max_ratio,
                                       lo=len(gone))
        finally:
            lat.timer.model = None  # type: ignore[assignment]
        self.search = lat.meta(info)
        return new, float(info.achieved if info.achieved is not None else goal)

    def final(self, dense: nn.Module, pruned: nn.Module) -> dict[str, Any]:
        """Time the final model against the dense one: the ``plan.meta`` entries."""
        timer = LatencyTimer(dense, self.example_inputs, self.comb,
                             batch_size=self.setup.timer.batch_size)
        t = timer.time_model(pruned)
        meta = dict(self.search
                    or self.setup.meta(LatencySearch(target=self.target, tol=self.tol)))
        search = dict(meta.get("latency_search", {}))
        search.update(timings=int(search.get("timings", 0)) + 1,
                      met=t.fraction <= self.target * (1 + self.tol))
        meta.update(latency=t.fraction, latency_ms=[t.base_ms, t.ms], latency_search=search)
        return meta
