"""Timing models for latency targets: the clock, per-module self times, and
paired original-vs-candidate timing. See :mod:`cpd.plan.latency_search` for the method."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from cpd.apply.apply import apply_plan
from cpd.groups.comb_result import CombResult
from cpd.inputs import (
    ExampleInputs,
    batch_like,
    call_model,
    evaluating,
    model_device,
    to_device,
)
from cpd.plan.plan import Plan
from cpd.plan.select import Keep

#: Fractions of every group removed in the two probes the cost model is fitted to.
from cpd.trace.gc_pause import gc_paused

# --------------------------------------------------------------------------------------
# timing

def _named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(model.named_modules())  # de-duplicated: a shared module is hooked once


@contextmanager
def _hooked(model: nn.Module, enter: Callable[[str], None],
            leave: Callable[[str], None]) -> Iterator[None]:
    """Call ``enter(name)`` / ``leave(name)`` around every module's forward."""
    def pre(n: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any) -> None:
            enter(n)
        return hook

    def post(n: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:  # returns None: output kept
            leave(n)
        return hook

    handles = []
    for name, mod in _named_modules(model):
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post(name), always_call=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def clock_for(device: torch.device, clock: str = "auto") -> tuple[str, Callable[[], float]]:
    """The clock latency is read from: ``("thread_cpu", time.thread_time)`` or
    ``("wall", time.perf_counter)``.

    ``auto``: the CPU time of the calling thread when the model runs on the CPU with
    one torch thread (all work then happens in this thread, so its CPU time is the
    forward's latency without the time other processes held the core), else wall
    time (several threads, or a GPU).
    """
    if clock == "auto":
        clock = "thread_cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    if clock == "thread_cpu":
        return clock, time.thread_time
    if clock == "wall":
        return clock, time.perf_counter
    raise ValueError(f"clock must be 'auto', 'thread_cpu' or 'wall', got {clock!r}")


class _SelfTimer:
    """Hooks that record every module's self time (ms) during one forward."""

    def __init__(self, sync: Callable[[], None], now: Callable[[], float]) -> None:
        self.sync, self.now = sync, now
        self.stack: list[list[Any]] = []
        self.times: dict[str, float] = defaultdict(float)

    def enter(self, name: str) -> None:
        self.sync()
        self.stack.append([name, self.now(), 0.0])

    def leave(self, name: str) -> None:
        self.sync()
        now = self.now()
        n, t0, child = self.stack.pop()
        incl = now - t0
        self.times[n] += (incl - child) * 1e3
        if self.stack:
            self.stack[-1][2] += incl

    def reset(self) -> dict[str, float]:
        out, self.times, self.stack = dict(self.times), defaultdict(float), []
        return out


def profile_self_times(
    models: list[nn.Module], inputs: ExampleInputs, *, warmup: int = 1, min_runs: int = 3,
    max_runs: int = 9, max_seconds: float = 20.0, clock: str = "auto",
) -> tuple[list[dict[str, float]], int]:
    """Median self time (ms) of every module of each model, timed in round-robin.

    Returns the per-model medians and the number of timed rounds.
    """
    device = model_device(models[0], inputs)
    sync = _sync_for(device)
    _, now = clock_for(device, clock)
    timers = [_SelfTimer(sync, now) for _ in models]
    runs: list[list[dict[str, float]]] = [[] for _ in models]
    with contextlib.ExitStack() as stack:
        for m, t in zip(models, timers):
            stack.enter_context(evaluating(m))
            stack.enter_context(_hooked(m, t.enter, t.leave))
        with torch.inference_mode():
            for m, t in zip(models, timers):
                for _ in range(warmup):
                    call_model(m, inputs)
                t.reset()
            rounds = 0
            with gc_paused():
                start = time.perf_counter()
                while rounds < max_runs:
                    order = range(len(models)) if rounds % 2 == 0 else reversed(range(len(models)))
                    for i in order:
                        call_model(models[i], inputs)
                        runs[i].append(timers[i].reset())
                    rounds += 1
                    if rounds >= min_runs and time.perf_counter() - start > max_seconds:
                        break
    medians = []
    for per_run in runs:
        names = set().union(*per_run)
        medians.append({n: statistics.median(r.get(n, 0.0) for r in per_run) for n in names})
    return medians, rounds


@dataclass
class Timing:
    """One paired measurement of a candidate against the original (ms).

    ``fraction`` is the ratio the search uses (see :class:`LatencyTimer`), with
    ``base_ms`` / ``ms`` of the same statistic; the median and min ratios are kept
    for the record.
    """

    fraction: float
    base_ms: float
    ms: float
    runs: int
    median_fraction: float = 0.0
    base_median_ms: float = 0.0
    median_ms: float = 0.0
    min_fraction: float = 0.0


class LatencyTimer:
    """Times pruned models against the original on its device (paired runs).

    Each measurement alternates original and candidate (ABBA order) after warm-up,
    until ``min_runs`` pairs and ``max_seconds`` have passed or ``max_runs`` pairs.
    The clock is :func:`clock_for`'s: with one torch thread on a CPU the thread's CPU
    time. On a shared machine that matters more than anything else: with more
    runnable processes than cores, a forward longer than a scheduler slice (a few
    ms) is usually preempted, so wall-clock medians of a 5 ms and a 2 ms model gave
    ratios anywhere between 0.14 and 0.63 in repeated measurements on the 2-core
    development machine under load ~4, while CPU-time medians gave 0.41-0.44.

    ``stat="median"`` (default): the fraction is the median of the per-pair ratios;
    ``stat="min"``: the ratio of the fastest runs (timing noise only ever adds
    time; useful for wall-clock timing on a busy machine). Both are recorded.
    """

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs, comb: CombResult, *,
                 batch_size: int = 1, warmup: int = 1, min_runs: int = 3, max_runs: int = 15,
                 max_seconds: float = 10.0, stat: str = "median", clock: str = "auto") -> None:
        if stat not in ("min", "median"):
            raise ValueError(f"stat must be 'min' or 'median', got {stat!r}")
        self.model, self.comb = model, comb
        self.device = model_device(model, example_inputs)
        self.inputs = to_device(batch_like(example_inputs, batch_size), self.device)
        self.batch_size = batch_size
        self.warmup, self.min_runs, self.max_runs = warmup, min_runs, max_runs
        self.max_seconds, self.stat = max_seconds, stat
        self.clock, self._now = clock_for(self.device, clock)
        self.count = 0
        self.threads = torch.get_num_threads()

    def time_model(self, pruned: nn.Module) -> Timing:
        """Time ``pruned`` against the original model."""
        sync = _sync_for(self.device)
        base_t: list[float] = []
        cand_t: list[float] = []

        now = self._now

        def once(m: nn.Module) -> float:
            sync()
            t0 = now()
            call_model(m, self.inputs)
            sync()
            return (now() - t0) * 1e3

        with evaluating(self.model), evaluating(pruned), torch.inference_mode():
            for _ in range(self.warmup):
                once(self.model)
                once(pruned)
            with gc_paused():
                start = time.perf_counter()
                for i in range(self.max_runs):
                    if i % 2 == 0:
                        base_t.append(once(self.model))
                        cand_t.append(once(pruned))
                    else:
                        cand_t.append(once(pruned))
                        base_t.append(once(self.model))
                    if i + 1 >= self.min_runs and time.perf_counter() - start > self.max_seconds:
                        break
        self.count += 1
        med = statistics.median(c / b for b, c in zip(base_t, cand_t))
        bmed, cmed = statistics.median(base_t), statistics.median(cand_t)
        lo = min(cand_t) / min(base_t)
        if self.stat == "min":
            return Timing(lo, min(base_t), min(cand_t), len(base_t), med, bmed, cmed, lo)
        return Timing(med, bmed, cmed, len(base_t), med, bmed, cmed, lo)

    def __call__(self, keep: Keep) -> Timing:
        pruned = apply_plan(self.model, Plan.from_comb(self.comb, keep))
        try:
            return self.time_model(pruned)
        finally:
            del pruned
