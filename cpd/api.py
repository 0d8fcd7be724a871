"""The public entry points: ``comb``, ``prune`` and ``count``.

Each is a thin layer over the stages (trace -> groups -> scores -> plan -> apply),
which are usable on their own.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from cpd.apply.modules import drop_caches
from cpd.apply.recalibrate import recalibrate_bn
from cpd.apply.verify import apply_checked
from cpd.groups.build import build_groups
from cpd.groups.comb_result import CombResult
from cpd.inputs import ExampleInputs
from cpd.plan.latency_search import (
    DEFAULT_TOL,
    LatencySetup,
    check_latency_args,
    select_latency,
)
from cpd.plan.measure import Measurer
from cpd.plan.hessian_rows import HessianRows
from cpd.plan.plan import Plan
from cpd.plan.select import ranking, select_global, select_uniform
from cpd.plan.select_uniform import check_allocation, select_uniform_to
from cpd.report.counting import count
from cpd.scores.registry import get_criterion
from cpd.trace.gc_pause import gc_paused
from cpd.trace.recorder import trace

__all__ = ["PruneResult", "comb", "count", "prune"]


def comb(model: nn.Module, example_inputs: ExampleInputs, *,
         ignore: Iterable[str] = ()) -> CombResult:
    """Trace one forward pass and return every group of coupled channels.

    Args:
        model: any ``nn.Module``. Its weights and modes are not modified; eval-mode
            caches derived from weights (LeViT's attention biases) are dropped by
            cycling ``train()``, so that the trace sees the weights, not a stale cache.
        example_inputs: a tensor, a tuple of positional args or a dict of kwargs.
        ignore: module names (as in ``named_modules()``) whose channels must stay.
    """
    with gc_paused():
        drop_caches(model)
        return build_groups(trace(model, example_inputs), model, tuple(ignore),
                            example_inputs)


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


def _check_args(ratio: float | None, macs: float | None, params: float | None,
                latency: float | None = None) -> str:
    """Check the targets; returns the name of the one that is set."""
    given = [n for n, v in (("ratio", ratio), ("macs", macs), ("params", params),
                            ("latency", latency)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of ratio=, macs=, params=, latency= "
                         f"(got {given or 'none'})")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    for n, v in (("macs", macs), ("params", params)):
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError(f"{n} is a fraction of the original and must be in (0, 1], got {v}")
    check_latency_args(latency, None, None)
    return given[0]


def _scores(model: nn.Module, groups: list, importance: str, data: Iterable | None,
            loss_fn: Callable | None, batches: int | None,
            options: dict[str, Any] | None = None,
            rows: bool = False) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor] | None]:
    """Scores per group (``importance`` with ``options``, accumulated on ``data``) and,
    with ``rows`` and ``hessian``, its mask-gradient rows (for interaction-aware
    global selection, :mod:`cpd.plan.select_fisher`); else ``None``."""
    with_rows = rows and importance == "hessian"
    crit = (HessianRows(**(options or {})) if with_rows
            else get_criterion(importance, **(options or {}))).prepare(model, groups)
    if crit.requires_data:
        if data is None or loss_fn is None:
            raise ValueError(f"importance={importance!r} needs data= (batches of "
                             "(inputs, targets)) and loss_fn=; or use importance='magnitude'")
        for i, (inputs, targets) in enumerate(data):
            if batches is not None and i >= batches:
                break
            crit.accumulate(model, inputs, targets, loss_fn)
    return crit.scores(), (crit.rows() if isinstance(crit, HessianRows) else None)


def prune(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    ratio: float | None = None,
    macs: float | None = None,
    params: float | None = None,
    latency: float | None = None,
    latency_batch_size: int = 1,
    latency_tol: float = DEFAULT_TOL,
    importance: str = "magnitude",
    criterion_options: dict[str, Any] | None = None,
    ignore: Iterable[str] = (),
    round_to: int | None = None,
    head_dim: bool = False,
    max_ratio: float = 0.95,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    batches: int | None = None,
    steps: int = 1,
    mode: str = "mask",
    allocation: str = "global",
    recalibrate: bool = True,
    inplace: bool = False,
) -> PruneResult:
    """Physically remove channels and return the smaller model with its plan.

    Args:
        ratio: remove this fraction of the channels of every prunable group.
        macs, params: rank channels globally and remove until MACs (or parameters)
            are at most this fraction of the original.
        latency: rank channels globally by importance per ms saved and remove until
            the forward latency, timed on the model's device with the current torch
            thread count, is at most this fraction of the original (within
            ``latency_tol``). With one thread on a CPU the clock is the thread's CPU
            time, which other processes on a shared machine do not inflate. See
            :mod:`cpd.plan.latency_cost`. ``plan.meta`` records the target, the
            achieved (timed) fraction and the search's measurements.
        latency_batch_size: images per forward pass for the latency target.
        latency_tol: relative tolerance on the timed latency fraction (0.05: a 0.5
            target accepts a measured 0.475-0.525; timing noise makes exact
            impossible).
        importance: a criterion name (``cpd.scores.available()``).
        criterion_options: keyword options of the criterion (``per_sample=False``
            for hessian, ``seed=`` for random, ``n_probes=`` for obd...).
        ignore: module names to leave alone (output layers are kept automatically).
        round_to: kept channel counts are multiples of this (heads are whole units).
        head_dim: also prune the per-head dim of attention (off: whole heads only).
        max_ratio: no group loses more than this fraction of its channels.
        data, loss_fn, batches: batches of ``(inputs, targets)`` and the loss the
            data-driven criteria differentiate; ``batches`` caps how many are used
            (per step when ``steps > 1``).
        steps: prune iteratively: each step re-scores the partly pruned model on
            ``batches`` batches and removes the next share of channels.
        mode: with ``steps > 1``, ``"mask"`` zeroes removed channels between steps and
            removes them at the end; ``"physical"`` removes them at every step, so
            later steps score (and run) the smaller model. Same channels for the same
            scores; see :mod:`cpd.plan.schedule`.
        recalibrate: when ``data`` is given, re-estimate the pruned model's
            BatchNorm statistics on ``batches`` batches (forward passes only, no
            weight changes); stale statistics otherwise dominate one-shot accuracy.
        inplace: modify ``model`` itself instead of a copy.

    Raises:
        ValueError: bad targets, or an ``ignore`` name that is not a module.
        RuntimeError: the model cannot run on ``example_inputs``.
    """
    from cpd.plan.physical import check_mode  # the schedule builds on this module

    kind = _check_args(ratio, macs, params, latency)
    check_latency_args(None, latency_batch_size, latency_tol)
    check_mode(mode)
    check_allocation(allocation, kind, None)
    if steps > 1:
        return _prune_iterative(model, example_inputs, ratio=ratio, macs=macs, params=params,
                                latency=latency, latency_batch_size=latency_batch_size,
                                latency_tol=latency_tol,
                                importance=importance, criterion_options=criterion_options,
                                ignore=tuple(ignore), round_to=round_to,
                                head_dim=head_dim, max_ratio=max_ratio, data=data,
                                loss_fn=loss_fn, batches=batches, steps=steps, inplace=inplace,
                                recalibrate=recalibrate, mode=mode, allocation=allocation)
    t0 = time.perf_counter()
    result = comb(model, example_inputs, ignore=ignore)
    t1 = time.perf_counter()
    groups = result.prunable(head_dim=head_dim)
    scores, rows = _scores(model, groups, importance, data, loss_fn, batches, criterion_options,
                           rows=kind in ("macs", "params") and allocation == "global")
    base_macs, base_params = count(model, example_inputs)
    lat: LatencySetup | None = None
    if ratio is not None:
        keep = select_uniform(groups, scores, ratio, round_to, max_ratio)
        target: dict[str, float] = {"target_ratio": ratio}
    elif latency is not None:
        lat = LatencySetup.build(model, example_inputs, result, groups,
                                 batch_size=latency_batch_size, round_to=round_to,
                                 max_ratio=max_ratio)
        order = ranking(groups, scores, cost=lat.channel_costs)
        keep, search = select_latency(groups, order, lat.cost, lat.timer, latency,
                                      tol=latency_tol, round_to=round_to, max_ratio=max_ratio)
        target = {"target_latency": latency}
    else:
        goal = float(macs if macs is not None else params)  # type: ignore[arg-type]
        m = Measurer(model, example_inputs, result, kind)
        if allocation == "uniform":
            keep, _, _ = select_uniform_to(groups, scores, m, goal, round_to, max_ratio)
        else:
            keep, _ = select_global(groups, scores, m, goal, round_to, max_ratio, rows=rows)
        target = {f"target_{kind}": goal}
    plan = Plan.from_comb(result, keep, importance=importance, **target)
    if lat is not None and inplace:
        lat.timer.model = copy.deepcopy(model)  # the original, to re-time against
    pruned, plan, bad = apply_checked(model, example_inputs, plan, result.output_shapes, inplace)
    if recalibrate and data is not None:
        plan.meta["bn_recalibrated_batches"] = recalibrate_bn(pruned, data, batches)
    if lat is not None:
        if bad:  # rolled-back groups changed the model: time the final one again
            t = lat.timer.time_model(pruned)
            search.achieved, search.latency_ms = t.fraction, [t.base_ms, t.ms]
            search.met = t.fraction <= latency * (1 + latency_tol)  # type: ignore[operator]
            search.timings += 1
        lat.timer.model = None  # type: ignore[assignment]  # drop the reference
    t2 = time.perf_counter()
    new_macs, new_params = count(pruned, example_inputs)
    plan.meta.update(macs=new_macs / max(base_macs, 1), params=new_params / max(base_params, 1),
                     rolled_back=bad)
    if lat is not None:
        plan.meta.update(lat.meta(search))
    return PruneResult(pruned, plan, result, bad, (base_macs, new_macs),
                       (base_params, new_params), {"comb": t1 - t0, "prune": t2 - t1})


def _prune_iterative(model: nn.Module, example_inputs: ExampleInputs, *, data: Iterable | None,
                     loss_fn: Callable | None, batches: int | None, steps: int, inplace: bool, recalibrate: bool,
                     **kw: Any) -> PruneResult:
    """``steps`` rounds of score-then-remove on a copy: masked then removed at the end,
    or (``mode="physical"``) removed at every step."""
    from cpd.plan.schedule import IterativePruner  # the schedule builds on this module

    work = model if inplace else copy.deepcopy(model)
    t0 = time.perf_counter()
    pruner = IterativePruner(work, example_inputs, steps=steps, **kw)
    if pruner.criterion.requires_data and (data is None or loss_fn is None):
        raise ValueError(f"importance={kw['importance']!r} needs data= and loss_fn=")
    for _ in range(steps):
        if pruner.criterion.requires_data:
            for i, (inputs, targets) in enumerate(data):  # type: ignore[arg-type]
                if batches is not None and i >= batches:
                    break
                pruner.accumulate(work, inputs, targets, loss_fn)  # type: ignore[arg-type]
        pruner.step(work)
    # physical mode: ``work`` is already pruned, and is ours unless ``inplace``
    res = pruner.finalize(work, inplace=inplace or pruner.mode == "physical")
    if recalibrate and data is not None:
        res.plan.meta["bn_recalibrated_batches"] = recalibrate_bn(res.model, data, batches)
    res.seconds = {"prune": time.perf_counter() - t0}
    return res
