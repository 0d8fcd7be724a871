"""The public entry points: ``comb``, ``prune`` and ``count``.

Each is a thin layer over the stages (trace -> groups -> scores -> plan -> apply),
which are usable on their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from cpd.apply.apply import apply_plan
from cpd.apply.verify import apply_checked
from cpd.groups.build import build_groups
from cpd.groups.comb_result import CombResult
from cpd.plan.measure import Measurer
from cpd.plan.plan import Plan
from cpd.plan.select import select_global, select_uniform
from cpd.report.counting import count
from cpd.scores.registry import get_criterion
from cpd.trace.gc_pause import gc_paused
from cpd.trace.inputs import ExampleInputs
from cpd.trace.recorder import trace

__all__ = ["PruneResult", "comb", "count", "prune"]


def comb(model: nn.Module, example_inputs: ExampleInputs, *,
         ignore: Iterable[str] = ()) -> CombResult:
    """Trace one forward pass and return every group of coupled channels.

    Args:
        model: any ``nn.Module``; it is not modified.
        example_inputs: a tensor, a tuple of positional args or a dict of kwargs.
        ignore: module names (as in ``named_modules()``) whose channels must stay.
    """
    with gc_paused():
        return build_groups(trace(model, example_inputs), model, tuple(ignore))


@dataclass
class PruneResult:
    """What :func:`prune` returns.

    Attributes:
        model: the smaller model (same classes as the input).
        plan: kept channels per group; re-applies to the original architecture.
        comb: the groups the plan refers to.
        rolled_back: ids of groups whose pruning broke the forward and was undone.
        macs, params: (before, after) counts on the example input.
    """

    model: nn.Module
    plan: Plan
    comb: CombResult
    rolled_back: list[int] = field(default_factory=list)
    macs: tuple[int, int] = (0, 0)
    params: tuple[int, int] = (0, 0)
    seconds: dict[str, float] = field(default_factory=dict)


def _check_args(ratio: float | None, macs: float | None, params: float | None) -> None:
    given = [n for n, v in (("ratio", ratio), ("macs", macs), ("params", params)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of ratio=, macs=, params= (got {given or 'none'})")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    for n, v in (("macs", macs), ("params", params)):
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError(f"{n} is a fraction of the original and must be in (0, 1], got {v}")


def _scores(model: nn.Module, groups: list, importance: str, data: Iterable | None,
            loss_fn: Callable | None, batches: int | None) -> dict[int, torch.Tensor]:
    crit = get_criterion(importance).prepare(model, groups)
    if crit.requires_data:
        if data is None or loss_fn is None:
            raise ValueError(f"importance={importance!r} needs data= (batches of "
                             "(inputs, targets)) and loss_fn=; or use importance='magnitude'")
        for i, (inputs, targets) in enumerate(data):
            if batches is not None and i >= batches:
                break
            crit.accumulate(model, inputs, targets, loss_fn)
    return crit.scores()


def prune(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    ratio: float | None = None,
    macs: float | None = None,
    params: float | None = None,
    importance: str = "magnitude",
    ignore: Iterable[str] = (),
    round_to: int | None = None,
    head_dim: bool = False,
    max_ratio: float = 0.95,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    batches: int | None = None,
    inplace: bool = False,
) -> PruneResult:
    """Physically remove channels and return the smaller model with its plan.

    Args:
        ratio: remove this fraction of the channels of every prunable group.
        macs, params: rank channels globally and remove until MACs (or parameters)
            are at most this fraction of the original.
        importance: a criterion name (``cpd.scores.available()``).
        ignore: module names to leave alone (output layers are kept automatically).
        round_to: kept channel counts are multiples of this (heads are whole units).
        head_dim: also prune the per-head dim of attention (off: whole heads only).
        max_ratio: no group loses more than this fraction of its channels.
        data, loss_fn, batches: batches of ``(inputs, targets)`` and the loss the
            data-driven criteria differentiate; ``batches`` caps how many are used.
        inplace: modify ``model`` itself instead of a copy.

    Raises:
        ValueError: bad targets, or an ``ignore`` name that is not a module.
        RuntimeError: the model cannot run on ``example_inputs``.
    """
    _check_args(ratio, macs, params)
    t0 = time.perf_counter()
    result = comb(model, example_inputs, ignore=ignore)
    t1 = time.perf_counter()
    groups = result.prunable(head_dim=head_dim)
    scores = _scores(model, groups, importance, data, loss_fn, batches)
    base_macs, base_params = count(model, example_inputs)
    if ratio is not None:
        keep = select_uniform(groups, scores, ratio, round_to, max_ratio)
        target: dict[str, float] = {"ratio": ratio}
    else:
        kind = "macs" if macs is not None else "params"
        goal = float(macs if macs is not None else params)  # type: ignore[arg-type]
        m = Measurer(model, example_inputs, result, kind)
        keep, _ = select_global(groups, scores, m, goal, round_to, max_ratio)
        target = {kind: goal}
    plan = Plan.from_comb(result, keep, importance=importance, **target)
    pruned, plan, bad = apply_checked(model, example_inputs, plan, result.output_shapes, inplace)
    t2 = time.perf_counter()
    new_macs, new_params = count(pruned, example_inputs)
    plan.meta.update(macs=new_macs / max(base_macs, 1), params=new_params / max(base_params, 1),
                     rolled_back=bad)
    return PruneResult(pruned, plan, result, bad, (base_macs, new_macs),
                       (base_params, new_params), {"comb": t1 - t0, "prune": t2 - t1})
