"""Timing several models fairly: rounds that alternate between them.

Timing model A for half a minute and then model B compares A under one machine load
with B under another; on a shared machine that alone can turn a 1.4x speed-up into
1.0x. Here the timed runs of each (backend, batch size) are split into rounds; each
round times every model once, in A B / B A order alternately (so neither is always
first after the other), with one warm-up run. A model's latency is the median of
its round medians; a speed-up is the median over rounds of the baseline's round
median over the model's (both measured minutes apart at most).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace

from cpd.report.latency import Latency

__all__ = ["Timer", "combine", "time_rounds"]

#: ``timer(batch_size, warmup=, repeats=, max_seconds=) -> Latency`` for one model and backend.
Timer = Callable[..., Latency]


def combine(rounds: Sequence[Latency]) -> Latency:
    """One :class:`Latency` from per-round ones: medians of medians and of p90s, all runs."""
    if len(rounds) == 1:
        return rounds[0]
    median = statistics.median(r.median_ms for r in rounds)
    return replace(rounds[0], median_ms=median, p90_ms=statistics.median(r.p90_ms for r in rounds),
                   mean_ms=statistics.fmean(r.mean_ms for r in rounds),
                   min_ms=min(r.min_ms for r in rounds), throughput=rounds[0].batch_size / (median / 1e3),
                   runs=sum(r.runs for r in rounds))


def time_rounds(
    timers: Sequence[dict[str, Timer]], backends: Sequence[str], batch_sizes: Sequence[int], *,
    rounds: int, warmup: int, repeats: int, max_seconds: float | None,
) -> tuple[list[list[Latency]], list[list[float]]]:
    """Time every model at every (backend, batch size), interleaved in ``rounds``.

    Args:
        timers: per model, ``{backend: timer}``; the first model is the baseline.
        backends, batch_sizes: what to time, in this order.
        rounds: rounds per (backend, batch size); 1 times each model once, in turn.
        warmup: untimed runs before a model's first round (1 before later rounds).
        repeats, max_seconds: the budget of one (model, backend, batch size),
            shared out evenly over the rounds.

    Returns:
        Per model, its latencies in (backend, batch size) order; and per model the
        speed-ups over the baseline in the same order (1.0 for the baseline).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    per_round = max(1, math.ceil(repeats / rounds))
    budget = None if max_seconds is None else max_seconds / rounds
    results: list[list[Latency]] = [[] for _ in timers]
    speedups: list[list[float]] = [[] for _ in timers]
    for backend in backends:
        for batch in batch_sizes:
            measured: list[list[Latency]] = [[] for _ in timers]
            for r in range(rounds):
                order = range(len(timers)) if r % 2 == 0 else reversed(range(len(timers)))
                for i in order:
                    measured[i].append(timers[i][backend](batch, warmup=warmup if r == 0 else min(warmup, 1),
                                                          repeats=per_round, max_seconds=budget))
            for i, lats in enumerate(measured):
                results[i].append(combine(lats))
                ratios = [b.median_ms / m.median_ms for b, m in zip(measured[0], lats) if m.median_ms > 0]
                speedups[i].append(statistics.median(ratios) if ratios else float("nan"))
    return results, speedups
