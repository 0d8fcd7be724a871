"""Uniform allocation to a measured target: one removal fraction for every group.

:func:`cpd.plan.select.select_global` ranks channels of all groups together, so the
scores decide how much each layer loses. :func:`select_uniform_to` lets the scores
decide only *which* channels of a group go: every prunable group loses the same
fraction, and that fraction is the smallest one whose measured cost (MACs or
parameters, as a fraction of the original) meets the target, found by bisection.

Why both: the global ranking compares scores across layers, and how comparable they
are depends on the model and the task. On the CamVid val split (``benchmarks/camvid.py``,
10 pruning steps to 50 % MACs with distillation, mean of 4 fine-tuning seeds) the
uniform allocation gave 52.81 vs 50.94 mIoU on a CNN segmenter and 40.28 vs 39.27 on
SegFormer (``benchmarks/results/camvid_val_sweep.json``); the global ranking moved
most removals into a few groups. It is the user's choice (``allocation=`` of
:func:`cpd.prune` and :class:`cpd.plan.schedule.IterativePruner`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cpd.groups.group import Group
from cpd.plan.select import Keep, bisect_prefix, ranking, select_uniform

ALLOCATIONS = ("global", "uniform")

#: bisection steps on the fraction: 2**-20 is far below one channel of any group
ITERS = 20


def select_uniform_to(
    groups: list[Group], scores: dict[int, torch.Tensor], measure: Callable[[Keep], float],
    target: float, round_to: int | None = None, max_ratio: float = 0.95,
) -> tuple[Keep, float, float]:
    """The smallest common removal fraction with ``measure(keep) <= target``.

    Each group keeps its highest-scored channels (:func:`~cpd.plan.select.select_uniform`;
    a score of ``-inf`` marks a channel that must go first). ``measure`` must fall as
    the fraction grows. Groups of equal size cross a channel count at the same
    fraction, so one step of the fraction can remove several costly channels at
    once; the channels between the last fraction that misses the target and the
    first that meets it are therefore removed one at a time, least important
    (relative to their group) first, until the target is met. When even
    ``max_ratio`` misses the target, the keep-set at ``max_ratio`` is returned with
    its measured value.

    Returns:
        ``(keep, measured value, fraction)``: the fraction is the first that met the
        target; ``keep`` may leave a few of its channels in.
    """
    best = select_uniform(groups, scores, max_ratio, round_to, max_ratio)
    best_val = measure(best)
    if best_val > target:
        return best, best_val, max_ratio
    lo, hi = 0.0, max_ratio
    for _ in range(ITERS):
        mid = 0.5 * (lo + hi)
        keep = select_uniform(groups, scores, mid, round_to, max_ratio)
        val = measure(keep)
        if val <= target:
            hi, best, best_val = mid, keep, val
        else:
            lo = mid
    keep, val = _fill(groups, scores, measure, target, select_uniform(groups, scores, lo, round_to, max_ratio),
                      best, best_val, round_to, max_ratio)
    return keep, val, hi


def _fill(groups: list[Group], scores: dict[int, torch.Tensor], measure: Callable[[Keep], float],
          target: float, keep_lo: Keep, keep_hi: Keep, val_hi: float,
          round_to: int | None, max_ratio: float) -> tuple[Keep, float]:
    """``keep_lo`` minus the fewest channels of ``keep_lo - keep_hi`` that meet ``target``.

    A prefix search (:func:`~cpd.plan.select.bisect_prefix`) over an order that lists
    ``keep_lo``'s removals first and then the channels ``keep_hi`` removes on top,
    least important first.
    """
    if round_to and round_to > 1:
        return keep_hi, val_hi  # single channels would break the rounding
    lo_sets = {g.id: set(keep_lo.get(g.id, range(g.size))) for g in groups}
    hi_sets = {g.id: set(keep_hi.get(g.id, range(g.size))) for g in groups}
    removed = [(g.id, c) for g in groups for c in range(g.size) if c not in lo_sets[g.id]]
    extra = {(gid, c) for gid in lo_sets for c in lo_sets[gid] - hi_sets[gid]}
    order = removed + [gc for gc in ranking(groups, scores) if gc in extra]
    _, keep, val = bisect_prefix(groups, order, measure, target, round_to, max_ratio, lo=len(removed))
    return keep, val


def check_allocation(allocation: str, kind: str, cost: str | None) -> str:
    """``allocation`` if it fits a ``kind`` target and the ``cost`` option, else ValueError."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if allocation == "uniform" and kind not in ("macs", "params"):
        raise ValueError(f"allocation='uniform' searches a macs or params target, not {kind}; a ratio "
                         "target is uniform already, a latency target ranks globally")
    if allocation == "uniform" and cost is not None:
        raise ValueError("cost= ranks channels across groups and does nothing with allocation='uniform'; "
                         "drop one of them")
    return allocation
