"""Choosing which channels to keep, from per-channel scores.

Two policies:

* **uniform**: every prunable group loses the same fraction of its channels
  (``ratio=0.3``), the lowest-scored ones.
* **global**: channels of all groups are ranked together and removed lowest-first
  until a measured target (MACs or parameters as a fraction of the original) is
  met; the number removed is found by bisection on the real measurement. For a
  latency target the ranking divides each channel's score by the latency its
  removal saves (``cost=``, from :mod:`cpd.plan.latency_cost`), and the search
  over the prefix length lives in :func:`cpd.plan.latency_search.select_latency`.

Both respect ``round_to`` (the kept count is a multiple of it) and a per-group
``max_ratio`` so that no layer collapses.

Given the rows of the ``hessian`` criterion's mask-gradient matrix (``rows=``, from
:class:`cpd.plan.hessian_rows.HessianRows`), global selection removes channels in
the greedy order of :mod:`cpd.plan.select_fisher` instead, which accounts for how
removals interact; ``cpd.prune`` does this for ``hessian`` with a MACs or parameter
target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from itertools import islice

import torch

from cpd.groups.group import Group
from cpd.plan.select_fisher import fisher_order

Keep = dict[int, list[int]]


def min_keep(g: Group, max_ratio: float, round_to: int) -> int:
    """Fewest channels a group may keep: at least one unit of ``round_to``."""
    step = _step(g, round_to)
    floor = max(1, math.ceil(g.size * (1.0 - max_ratio)))
    return min(g.size, max(step, math.ceil(floor / step) * step))


def _step(g: Group, round_to: int | None) -> int:
    # Heads are whole units already; other groups round their kept count.
    if g.role == "heads" or not round_to or round_to <= 1 or g.size % round_to:
        return 1
    return round_to


def _top(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` highest scores, in channel order (ties: lower index wins)."""
    order = sorted(range(len(scores)), key=lambda c: (-float(scores[c]), c))
    return sorted(order[:n])


def select_uniform(
    groups: list[Group], scores: dict[int, torch.Tensor], ratio: float,
    round_to: int | None = None, max_ratio: float = 0.95,
) -> Keep:
    """Remove ``floor(size * ratio)`` channels from every group, lowest-scored first."""
    keep: Keep = {}
    for g in groups:
        step = _step(g, round_to)
        n = g.size - math.floor(g.size * ratio)
        n = min(g.size, math.ceil(n / step) * step)
        n = max(n, min_keep(g, max_ratio, round_to or 1))
        if n < g.size:
            keep[g.id] = _top(scores[g.id], n)
    return keep


def ranking(groups: list[Group], scores: dict[int, torch.Tensor],
            cost: dict[int, float] | None = None,
            by_group_mean: bool = True) -> list[tuple[int, int]]:
    """All channels, least important first.

    With ``by_group_mean`` (the default, for every criterion) each score is divided by
    its group's mean, so that groups compete on relative importance and removals
    spread over layers. Raw loss-change scores (hessian, ``by_group_mean=False``)
    rank single channels better but concentrate removals where single channels look
    cheap (wide late layers), and there removals compound: in the CamVid criteria
    benchmark raw hessian scores gave 60 % vs 48 % top-1 at 70 % MACs but collapsed
    to 4 % vs 22 % at 50 % (one-shot, no BN recalibration), and with BatchNorm
    re-estimated 73 % / 38 % vs 78 % / 70 %; dividing by group size, parameters or
    MACs per channel (with damping) did not fix that (see the benchmark's variant
    rows). The group mean is the ranking for scores alone; for ``hessian`` the
    interaction-aware order of :mod:`cpd.plan.select_fisher` is better than both.

    With ``cost`` (group id -> what removing one of its channels saves, e.g. ms of
    latency), each normalised score is further divided by its group's cost relative
    to the mean cost: channels are ranked by importance per unit of cost saved, so a
    channel that is cheap to keep goes later than an equally important costly one.
    Non-positive costs count as 1 % of the mean (removing them saves ~nothing).

    A score of ``-inf`` forces the channel to the front (the schedule marks channels
    an earlier step removed this way); group means are over the finite scores.
    """
    rel: dict[int, float] = {}
    if cost is not None:
        pos = [float(cost[g.id]) for g in groups if float(cost.get(g.id, 0.0)) > 0]
        mean_cost = sum(pos) / len(pos) if pos else 1.0
        for g in groups:
            c = float(cost.get(g.id, 0.0))
            rel[g.id] = (c if c > 0 else 0.01 * mean_cost) / mean_cost
    rows: list[tuple[float, int, int]] = []
    for g in groups:
        s = scores[g.id].double()
        live = s[torch.isfinite(s)]  # -inf marks channels an earlier step removed
        mean = ((float(live.abs().mean()) if len(live) else 0.0) or 1.0) if by_group_mean else 1.0
        div = mean * rel.get(g.id, 1.0)
        rows += [(float(v) / div, g.id, c) for c, v in enumerate(s.tolist())]
    rows.sort()
    return [(gid, c) for _, gid, c in rows]


def keep_after(
    groups: list[Group], order: list[tuple[int, int]], k: int,
    round_to: int | None = None, max_ratio: float = 0.95,
) -> Keep:
    """Keep sets when the first ``k`` channels of ``order`` are removed (within limits)."""
    by_id = {g.id: g for g in groups}
    removed: dict[int, list[int]] = {}
    for gid, c in order[:k]:
        removed.setdefault(gid, []).append(c)
    keep: Keep = {}
    for gid, rem in removed.items():
        g = by_id[gid]
        step = _step(g, round_to)
        lo = min_keep(g, max_ratio, round_to or 1)
        n_keep = max(lo, g.size - len(rem))
        n_keep = min(g.size, math.ceil(n_keep / step) * step)
        drop = rem[: g.size - n_keep]  # least important of the removal list first
        if drop:
            dropped = set(drop)
            keep[gid] = [c for c in range(g.size) if c not in dropped]
    return keep


def bisect_prefix(
    groups: list[Group], order: list[tuple[int, int]], measure: Callable[[Keep], float],
    target: float, round_to: int | None = None, max_ratio: float = 0.95,
    lo: int = 0, hi: int | None = None,
) -> tuple[int, Keep, float]:
    """Smallest ``k`` in ``(lo, hi]`` with ``measure(keep_after(k)) <= target``.

    Assumes ``measure`` falls as ``k`` grows and that ``k = lo`` misses the target.
    Returns ``(k, keep, value)``; when even ``hi`` misses the target, ``hi`` itself.
    """
    hi = len(order) if hi is None else hi
    best = keep_after(groups, order, hi, round_to, max_ratio)
    best_val = measure(best)
    if best_val > target:
        return hi, best, best_val
    while hi - lo > 1:
        mid = (lo + hi) // 2
        keep = keep_after(groups, order, mid, round_to, max_ratio)
        val = measure(keep)
        if val <= target:
            hi, best, best_val = mid, keep, val
        else:
            lo = mid
    return hi, best, best_val


def select_global(
    groups: list[Group], scores: dict[int, torch.Tensor], measure: Callable[[Keep], float],
    target: float, round_to: int | None = None, max_ratio: float = 0.95,
    cost: dict[int, float] | None = None, by_group_mean: bool = True,
    rows: Mapping[int, torch.Tensor] | None = None,
) -> tuple[Keep, float]:
    """Remove the fewest lowest-ranked channels so that ``measure(keep) <= target``.

    ``measure`` returns the pruned model's cost as a fraction of the original (it
    decreases as more channels go). Bisection finds the smallest prefix of the
    ranking that meets the target; if even the maximum allowed removal misses it,
    that maximum is returned with its measured value. ``cost`` is passed to
    :func:`ranking`, and so is ``by_group_mean``.

    With ``rows`` (group id -> ``(r, size)`` mask-gradient rows, see
    :class:`cpd.plan.hessian_rows.HessianRows`) the order is the greedy removal
    order under the whole empirical Fisher (:func:`select_fisher_global`);
    ``scores``, ``cost`` and ``by_group_mean`` are then unused.
    """
    if rows is not None:
        return select_fisher_global(groups, rows, measure, target, round_to, max_ratio)
    order = ranking(groups, scores, cost, by_group_mean)
    _, keep, val = bisect_prefix(groups, order, measure, target, round_to, max_ratio)
    return keep, val


def select_fisher_global(
    groups: list[Group], rows: Mapping[int, torch.Tensor], measure: Callable[[Keep], float],
    target: float, round_to: int | None = None, max_ratio: float = 0.95, segments: int = 20,
) -> tuple[Keep, float]:
    """:func:`select_global` in the greedy order of :func:`~cpd.plan.select_fisher.fisher_order`.

    The greedy order is built only as far as needed: ``1/segments`` of the channels
    at a time until a prefix meets the target, then bisection within the last
    segment (each greedy step costs a row of the Fisher, so a 70 % target does not
    pay for ordering every channel).
    """
    limits = {g.id: g.size - min_keep(g, max_ratio, round_to or 1) for g in groups}
    greedy = fisher_order(groups, rows, limits)
    step = max(1, sum(g.size for g in groups) // segments)
    order: list[tuple[int, int]] = []
    lo = 0
    while True:
        order += islice(greedy, step)
        hi = len(order)
        if hi == lo:  # nothing more may go: the maximum removal misses the target
            keep = keep_after(groups, order, hi, round_to, max_ratio)
            return keep, measure(keep)
        if measure(keep_after(groups, order, hi, round_to, max_ratio)) <= target:
            break
        lo = hi
    _, keep, val = bisect_prefix(groups, order, measure, target, round_to, max_ratio, lo=lo, hi=hi)
    return keep, val
