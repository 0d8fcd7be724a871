"""Latency targets: the search, and how the pieces fit together.

``cpd.prune(model, x, latency=0.5)`` asks for at most half the original forward
latency on the device the model lives on, at ``latency_batch_size`` images per
forward (default 1), with the current torch thread setting. MACs and parameters
can be counted on the ``meta`` device; latency has to be timed, and timing is slow
and noisy, so the search uses a *cost model* and times only a few candidates.

**Clock.** With one torch thread on a CPU, latency is read from the calling
thread's CPU time (:func:`clock_for`): all the work runs in that thread, so this is
the forward's latency without the time other processes held the core. On a shared
machine wall time is not usable for a target: with more runnable processes than
cores a forward longer than a scheduler slice is usually preempted, and wall-clock
ratios of the same two models varied between 0.14 and 0.63 from one measurement to
the next on the 2-core development machine, CPU-time ratios between 0.41 and 0.44.
With several threads or on a GPU the clock is wall time (synchronised on CUDA).

**Cost model** (:class:`LatencyCostModel`). Every module's *self* time (its time
minus its children's, recorded by forward pre/post hooks; on CUDA the hooks
synchronise) is timed on the device for the original model and for two uniformly
pruned probes (30 % and 60 % of every prunable group removed), in round-robin so
that load drift hits all three alike; medians over the runs. The work a module
does in a configuration is counted on ``meta`` (shapes only): FLOPs of the ops
torch's flop counter knows (convolutions, matmuls, attention), else the elements
read and written by its other ops (norms, activations, adds; views are free). Each
module gets a line ``t = a + b * w / w_original`` fitted to its three points (least
squares, ``a, b >= 0``): ``a`` is what pruning does not remove (Python, launch and
fixed overheads), ``b`` what scales with the work. The predicted latency of a
candidate keep-set is the sum over modules at that candidate's work, one ``meta``
forward.

The model is used twice:

1. **normaliser**: for each prunable group, the predicted ms saved per channel when
   half of it goes (:meth:`LatencyCostModel.channel_costs`); the global ranking
   (:func:`cpd.plan.select.ranking` with ``cost=``) orders channels by importance
   per ms saved;
2. **prediction**: bisection over the number of removed channels of that ranking
   runs on the predicted latency fraction.

**Confirmation and refinement** (:func:`select_latency`). The chosen candidate is
applied to a real copy and timed against the original (:class:`LatencyTimer`:
runs alternate between the two, the fraction is the median of the per-pair
ratios). If the measured fraction is within ``tol`` (relative) of the target the
search stops. Otherwise the measurement narrows a bracket on the number of removed
channels (too slow: remove more; too fast: remove less; the original model is the
first slow end, at 1.0). The next goal for the cost model is where the measured
miss, as a function of the predicted fraction, crosses zero between the two ends
(regula falsi with the Illinois rule, so it cannot stall on one side); with no
fast end measured yet, the goal is rescaled by the measured/predicted ratio. The
cost model's answer inside the bracket is timed next; when it is not strictly
inside, or was timed already, the midpoint is (bisection on real timings). At most
``max_timed`` candidates are timed. The pick is the least-pruned candidate
measured within tolerance (preferring one at or below the target), else the one
closest to the target from below, else the fastest.

Everything measured is recorded (:class:`LatencySearch`) and ends up in
``plan.meta``: target, achieved fraction, ms before/after, batch size, threads,
clock, device, cost-model evaluations, timed candidates and a trace of each
candidate's predicted and measured fraction.

What the cost model cannot see: kernels whose speed depends on the exact channel
count (oneDNN is fastest at multiples of 8 or 16), so ``round_to=8`` or ``16``
helps both the speed-up and the model's accuracy; the real timings catch the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group
from cpd.inputs import (
    ExampleInputs,
)

#: Fractions of every group removed in the two probes the cost model is fitted to.
from cpd.plan.latency_cost import LatencyCostModel, keep_key
from cpd.plan.latency_timer import LatencyTimer, Timing
from cpd.plan.select import Keep, bisect_prefix, keep_after

DEFAULT_TOL = 0.05
#: Default cap on candidates timed for real during the search.
DEFAULT_MAX_TIMED = 6


def check_latency_args(latency: float | None, batch_size: int | None, tol: float | None) -> None:
    """ValueError for a latency target outside (0, 1], a batch size < 1 or a bad tol."""
    if latency is not None and not 0.0 < latency <= 1.0:
        raise ValueError(f"latency is a fraction of the original and must be in (0, 1], "
                         f"got {latency}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"latency_batch_size must be an int >= 1, got {batch_size!r}")
    if tol is not None and not 0.0 < tol < 1.0:
        raise ValueError(f"latency_tol must be in (0, 1), got {tol}")

# --------------------------------------------------------------------------------------
# the search

@dataclass
class LatencySearch:
    """What :func:`select_latency` did (all JSON-friendly)."""

    target: float
    tol: float
    achieved: float | None = None      # measured fraction of the chosen candidate
    predicted: float | None = None     # cost-model fraction of the chosen candidate
    latency_ms: list[float] = field(default_factory=list)  # [original, pruned] medians
    evaluations: int = 0               # cost-model predictions (meta forwards)
    timings: int = 0                   # candidates timed for real
    met: bool = False                  # achieved <= target * (1 + tol)
    trace: list[dict[str, float]] = field(default_factory=list)

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)


class _Memo:
    """Caches a keep -> value measure by keep-set (round_to makes prefixes collide)."""

    def __init__(self, fn: Callable[[Keep], float]) -> None:
        self.fn, self.cache = fn, {}

    def __call__(self, keep: Keep) -> float:
        key = keep_key(keep)
        if key not in self.cache:
            self.cache[key] = self.fn(keep)
        return self.cache[key]


def select_latency(
    groups: list[Group], order: list[tuple[int, int]], predict: Callable[[Keep], float],
    timer: Callable[[Keep], Timing] | None, target: float, *, tol: float = DEFAULT_TOL,
    round_to: int | None = None, max_ratio: float = 0.95, lo: int = 0,
    max_timed: int = DEFAULT_MAX_TIMED,
) -> tuple[Keep, LatencySearch]:
    """Remove a prefix of ``order`` so that the measured latency fraction meets ``target``.

    ``predict`` is the cost model (cheap); ``timer`` times a keep-set for real
    (``None`` or ``max_timed=0``: trust the cost model). ``lo`` channels at the head
    of ``order`` are removed in any case (earlier steps of an iterative schedule).
    See the module docstring for the procedure.
    """
    pred = _Memo(predict)
    n = len(order)
    info = LatencySearch(target=target, tol=tol)

    def removed(keep: Keep) -> int:
        by = {g.id: g.size for g in groups}
        return sum(by[g] - len(k) for g, k in keep.items())

    k, keep, p = bisect_prefix(groups, order, pred, target, round_to, max_ratio, lo, n)
    if timer is None or max_timed <= 0:
        info.predicted = info.achieved = p
        info.met = p <= target * (1 + tol)
        info.evaluations = len(pred.cache)
        info.trace.append({"k": k, "removed": removed(keep), "predicted": p})
        return keep, info

    timed: dict[int, tuple[Keep, float, Timing]] = {}
    seen: set[tuple] = set()
    # Bracket on the number of removed channels: lo_k too slow, hi_k fast enough. Each
    # end keeps its predicted fraction p and its miss f = measured - target; the start
    # (nothing more removed) counts as measured at its prediction (exact when lo = 0:
    # the original is 1.0 of itself). hi_k = n is unmeasured until timed.
    lo_k, hi_k = lo, n
    p_lo = pred(keep_after(groups, order, lo, round_to, max_ratio)) if lo else 1.0
    f_lo, p_hi, f_hi = p_lo - target, 0.0, None
    last_side = ""
    for _ in range(max_timed):
        t = timer(keep)
        timed[k] = (keep, p, t)
        seen.add(keep_key(keep))
        info.trace.append({"k": k, "removed": removed(keep), "predicted": p,
                           "measured": t.fraction, "base_ms": t.base_ms, "ms": t.ms,
                           "min_measured": t.min_fraction, "runs": t.runs})
        if abs(t.fraction - target) <= tol * target:
            break
        f = t.fraction - target
        if f > 0:
            if k >= n:
                break  # the most that may be removed is still too slow
            if k > lo_k:
                if last_side == "lo" and f_hi is not None:
                    f_hi /= 2  # Illinois: the other end has stayed twice, move toward it
                lo_k, p_lo, f_lo, last_side = k, p, f, "lo"
        elif k < hi_k or f_hi is None:
            if last_side == "hi":
                f_lo /= 2
            hi_k, p_hi, f_hi, last_side = k, p, f, "hi"
        if hi_k - lo_k <= 1:
            break
        # Next goal for the cost model: where the measured misses, as a function of the
        # predicted fraction, cross zero (regula falsi with the Illinois rule); with
        # only the slow end measured, rescale by the measured/predicted ratio.
        if f_hi is None:
            goal = p * target / t.fraction
        else:
            goal = p_hi - f_hi * (p_hi - p_lo) / (f_hi - f_lo) if f_hi != f_lo else p
        goal = min(1.0, max(1e-6, goal))
        k2, keep2, p2 = bisect_prefix(groups, order, pred, goal, round_to, max_ratio,
                                      lo_k, hi_k)
        if keep_key(keep2) in seen or not lo_k < k2 < hi_k + (f_hi is None):
            k2 = (lo_k + hi_k) // 2  # bisection on real timings
            keep2 = keep_after(groups, order, k2, round_to, max_ratio)
            p2 = pred(keep2)
            if keep_key(keep2) in seen:
                break
        k, keep, p = k2, keep2, p2

    def pick() -> int:
        band = [kk for kk, (_, _, t) in timed.items() if abs(t.fraction - target) <= tol * target]
        if band:  # least pruned in the band, preferring at-or-below the target
            return min(band, key=lambda kk: (timed[kk][2].fraction > target, kk))
        below = [kk for kk, (_, _, t) in timed.items() if t.fraction <= target]
        if below:
            return max(below, key=lambda kk: timed[kk][2].fraction)
        return min(timed, key=lambda kk: timed[kk][2].fraction)

    best = pick()
    keep, p, t = timed[best]
    info.achieved, info.predicted = t.fraction, p
    info.latency_ms = [t.base_ms, t.ms]
    info.met = t.fraction <= target * (1 + tol)
    info.evaluations = len(pred.cache)
    info.timings = len(timed)
    return keep, info


@dataclass
class LatencySetup:
    """Cost model, timer and per-channel costs for one model (what prune builds)."""

    cost: LatencyCostModel
    timer: LatencyTimer
    channel_costs: dict[int, float]

    @staticmethod
    def build(model: nn.Module, example_inputs: ExampleInputs, comb: CombResult,
              groups: list[Group], *, batch_size: int = 1, round_to: int | None = None,
              max_ratio: float = 0.95) -> "LatencySetup":
        cost = LatencyCostModel(model, example_inputs, comb, groups, batch_size=batch_size,
                                round_to=round_to, max_ratio=max_ratio)
        timer = LatencyTimer(model, example_inputs, comb, batch_size=batch_size)
        return LatencySetup(cost, timer, cost.channel_costs())

    def meta(self, info: LatencySearch) -> dict[str, Any]:
        """The ``plan.meta`` entries for a finished search."""
        d = info.to_meta()
        d.update(profile_rounds=self.cost.profile_rounds,
                 cost_model_seconds=round(self.cost.seconds, 3),
                 channel_costs_ms={str(g): c for g, c in self.channel_costs.items()})
        return {
            "latency": info.achieved,
            "latency_ms": info.latency_ms,
            "latency_batch_size": self.timer.batch_size,
            "latency_threads": self.timer.threads,
            "latency_clock": self.timer.clock,
            "latency_device": str(self.timer.device),
            "latency_search": d,
        }
