"""One-shot pruning from precomputed scores, exactly as ``cpd.prune(macs=...)`` does it.

``cpd.prune`` scores again for every call and target. The benchmark scores once per
criterion and prunes to every target from those scores, calling the stages
``cpd.prune`` calls, in the same order:

    comb -> prunable groups -> criterion scores (hessian: HessianRows, scores + rows)
         -> Measurer + select_global(rows=...) -> Plan.from_comb -> apply_checked -> count

and then, like ``cpd.prune`` given ``data`` (``recalibrate=True``, its default),
:func:`cpd.apply.recalibrate.recalibrate_bn` on the scoring batches for the second
metric. ``check_against_prune`` confirms on the benchmark model that this path and
``cpd.prune`` keep the same channels for the default ``hessian`` criterion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import cpd
from cpd.apply.recalibrate import recalibrate_bn
from cpd.apply.verify import apply_checked
from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group
from cpd.plan.hessian_rows import HessianRows
from cpd.plan.measure import Measurer
from cpd.plan.plan import Plan
from cpd.plan.select import bisect_prefix, select_global
from cpd.report.counting import count
from cpd.scores.registry import get_criterion

__all__ = ["Pruned", "Scorer", "check_against_prune", "recalibrated", "same_weights", "snapshot"]

LossFn = Callable[[Any, Any], Tensor]
Order = list[tuple[int, int]]


@dataclass
class Pruned:
    model: nn.Module
    macs: float  # fraction of the original
    params: float
    removed: int
    rolled_back: list[int] = field(default_factory=list)
    keep: dict[int, list[int]] = field(default_factory=dict)  # kept channels of pruned groups


class Scorer:
    """Comb once; score with any criterion; prune to any MACs target."""

    def __init__(self, model: nn.Module, example_inputs: Tensor) -> None:
        self.model, self.example = model, example_inputs
        self.comb: CombResult = cpd.comb(model, example_inputs)
        self.groups: list[Group] = self.comb.prunable(head_dim=False)
        self.base_macs, self.base_params = count(model, example_inputs)
        self.measure = Measurer(model, example_inputs, self.comb, "macs")

    def criterion(self, name: str, **options: Any):
        """A prepared criterion; ``hessian`` is :class:`HessianRows`, as ``cpd.prune`` uses it."""
        crit = HessianRows(**options) if name == "hessian" else get_criterion(name, **options)
        return crit.prepare(self.model, self.groups)

    def prune(self, scores: dict[int, Tensor], target: float, label: str, *,
              rows: dict[int, Tensor] | None = None, order: Order | None = None,
              max_ratio: float = 0.95) -> Pruned:
        """Prune a copy of the model to ``target`` MACs (cpd.prune's selection and apply).

        ``rows``: the hessian mask-gradient rows (interaction-aware order, what
        ``cpd.prune`` uses for hessian). ``order``: a channel order to use instead
        (investigation variants only).
        """
        if order is not None:
            _, keep, _ = bisect_prefix(self.groups, order, self.measure, target, None, max_ratio)
        else:
            keep, _ = select_global(self.groups, scores, self.measure, target, None, max_ratio, rows=rows)
        plan = Plan.from_comb(self.comb, keep, importance=label, target_macs=target)
        pruned, plan, bad = apply_checked(self.model, self.example, plan, self.comb.output_shapes, False)
        macs, params = count(pruned, self.example)
        return Pruned(pruned, macs / max(self.base_macs, 1), params / max(self.base_params, 1),
                      plan.removed(), bad, {int(g): list(k) for g, k in plan.keep.items()})


def recalibrated(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> nn.Module:
    """A copy with BatchNorm statistics re-estimated on ``batches``, as ``cpd.prune`` does."""
    model = copy.deepcopy(model)
    recalibrate_bn(model, batches)
    return model.eval()


def check_against_prune(scorer: Scorer, batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn,
                        target: float) -> bool:
    """Does ``cpd.prune(importance="hessian")`` keep the same channels as this path?"""
    crit = scorer.criterion("hessian")
    for x, y in batches:
        crit.accumulate(scorer.model, x, y, loss_fn)
    keep, _ = select_global(scorer.groups, crit.scores(), scorer.measure, target, None, 0.95, rows=crit.rows())
    res = cpd.prune(scorer.model, scorer.example, macs=target, importance="hessian",
                    data=batches, loss_fn=loss_fn, batches=len(batches), recalibrate=False)
    mine = Plan.from_comb(scorer.comb, keep).keep
    return {int(g): list(k) for g, k in res.plan.keep.items()} == {int(g): list(k) for g, k in mine.items()}


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(model: nn.Module, snap: dict[str, Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())

