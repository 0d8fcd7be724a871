"""One-shot pruning from precomputed scores, exactly as ``cpd.prune(macs=...)`` does it.

``cpd.prune`` builds the criterion from its name alone (no options such as
``per_sample=False`` or a random ``seed``) and re-scores for every target. The
benchmark scores once per criterion and prunes to every target from those scores,
so it calls the same stages ``cpd.prune`` calls, in the same order:

    comb -> prunable groups -> criterion scores -> Measurer + select_global
         -> Plan.from_comb -> apply_checked -> count

``check_against_prune`` confirms on the benchmark model that this path and
``cpd.prune`` give the same plan for the default ``hessian`` criterion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import cpd
from cpd.apply.verify import apply_checked
from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group
from cpd.plan.measure import Measurer
from cpd.plan.plan import Plan
from cpd.plan.select import Keep, bisect_prefix, select_global
from cpd.report.counting import count
from cpd.scores.registry import get_criterion

__all__ = ["Pruned", "Scorer", "check_against_prune", "same_weights", "select_global_with", "snapshot"]

LossFn = Callable[[Any, Any], Tensor]


@dataclass
class Pruned:
    model: nn.Module
    macs: float  # fraction of the original
    params: float
    removed: int
    rolled_back: list[int] = field(default_factory=list)


class Scorer:
    """Comb once; score with any criterion; prune to any MACs target."""

    def __init__(self, model: nn.Module, example_inputs: Tensor) -> None:
        self.model, self.example = model, example_inputs
        self.comb: CombResult = cpd.comb(model, example_inputs)
        self.groups: list[Group] = self.comb.prunable(head_dim=False)
        self.base_macs, self.base_params = count(model, example_inputs)
        self.measure = Measurer(model, example_inputs, self.comb, "macs")

    def criterion(self, name: str, **options: Any):
        return get_criterion(name, **options).prepare(self.model, self.groups)

    def prune(self, scores: dict[int, Tensor], target: float, label: str,
              order: Callable[[list[Group], dict[int, Tensor]], list[tuple[int, int]]] | None = None) -> Pruned:
        """Prune a copy of the model to ``target`` MACs with ``scores`` (cpd.prune's steps).

        ``order``: a replacement for :func:`cpd.plan.select.ranking` (used only by the
        investigation variants); ``None`` is exactly what ``cpd.prune`` does.
        """
        if order is None:
            keep, _ = select_global(self.groups, scores, self.measure, target, None, 0.95)
        else:
            keep, _ = select_global_with(order(self.groups, scores), self.groups, self.measure, target)
        plan = Plan.from_comb(self.comb, keep, importance=label, target_macs=target)
        pruned, plan, bad = apply_checked(self.model, self.example, plan, self.comb.output_shapes, False)
        macs, params = count(pruned, self.example)
        return Pruned(pruned, macs / max(self.base_macs, 1), params / max(self.base_params, 1),
                      plan.removed(), bad)


def select_global_with(order: list[tuple[int, int]], groups: list[Group], measure: Callable[[Keep], float],
                       target: float, max_ratio: float = 0.95) -> tuple[Keep, float]:
    """:func:`cpd.plan.select.select_global` with a given channel order (same bisection)."""
    _, keep, val = bisect_prefix(groups, order, measure, target, None, max_ratio)
    return keep, val


def check_against_prune(scorer: Scorer, batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn,
                        target: float) -> bool:
    """Does ``cpd.prune(importance="hessian")`` keep the same channels as this path?"""
    crit = scorer.criterion("hessian")
    for x, y in batches:
        crit.accumulate(scorer.model, x, y, loss_fn)
    keep, _ = select_global(scorer.groups, crit.scores(), scorer.measure, target, None, 0.95)
    res = cpd.prune(scorer.model, scorer.example, macs=target, importance="hessian",
                    data=batches, loss_fn=loss_fn, batches=len(batches))
    mine = Plan.from_comb(scorer.comb, keep).keep
    return {int(g): list(k) for g, k in res.plan.keep.items()} == {int(g): list(k) for g, k in mine.items()}


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(model: nn.Module, snap: dict[str, Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())
