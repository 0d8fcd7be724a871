"""The latency cost model: per-module self time as a line in the work it does.

See :mod:`cpd.plan.latency_search` for how it is used."""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

#: Fractions of every group removed in the two probes the cost model is fitted to.
from torch.utils.flop_counter import flop_registry, shape_wrapper

from cpd.apply.apply import apply_plan
from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group
from cpd.inputs import (
    ExampleInputs,
    batch_like,
    call_model,
    evaluating,
    iter_tensors,
    model_device,
    to_device,
)
from cpd.plan.latency_timer import _hooked, profile_self_times
from cpd.plan.plan import Plan
from cpd.plan.select import Keep, _step, min_keep, select_uniform
from cpd.report.counting import _custom_mapping

DEFAULT_PROBES = (0.3, 0.6)
#: Default relative tolerance on the measured latency fraction.
DEFAULT_TOL = 0.05
#: Default cap on candidates timed for real during the search.
DEFAULT_MAX_TIMED = 6

# --------------------------------------------------------------------------------------
# module tracking and per-module work (meta device)

_FLOPS: dict[Any, Callable[..., int]] = {
    **flop_registry, **{k: shape_wrapper(v) for k, v in _custom_mapping().items()},
}


class _WorkMode(TorchDispatchMode):
    """Per module: FLOPs of counted ops, elements read + written by the others."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.flops: dict[str, float] = defaultdict(float)
        self.mem: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = self.stack[-1] if self.stack else ""
        fn = _FLOPS.get(func._overloadpacket)
        if fn is not None:
            self.flops[name] += float(fn(*args, **kwargs, out_val=out))
        elif not getattr(func, "is_view", False):
            self.mem[name] += float(sum(t.numel() for t in iter_tensors((args, kwargs, out))))
        return out


def module_work(model: nn.Module, inputs: ExampleInputs) -> dict[str, tuple[float, float]]:
    """``{module name: (flops, elements)}`` of one forward, each op charged to the
    innermost running module (self work, not inclusive)."""
    stack: list[str] = []
    mode = _WorkMode(stack)
    with _hooked(model, stack.append, lambda n: stack.pop()):
        with evaluating(model), torch.no_grad(), mode:
            call_model(model, inputs)
    names = set(mode.flops) | set(mode.mem)
    return {n: (mode.flops.get(n, 0.0), mode.mem.get(n, 0.0)) for n in names}

# --------------------------------------------------------------------------------------
# the cost model

def keep_key(keep: Keep) -> tuple:
    return tuple(sorted((g, tuple(k)) for g, k in keep.items()))


@dataclass
class _Line:
    a: float
    b: float
    full: float  # work in the original model (0: the module does no counted work)
    use_flops: bool


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``t = a + b f`` with ``a, b >= 0``."""
    fs = [p[0] for p in points]
    ts = [p[1] for p in points]
    mf, mt = sum(fs) / len(fs), sum(ts) / len(ts)
    var = sum((f - mf) ** 2 for f in fs)
    if var < 1e-9:
        return max(mt, 0.0), 0.0
    b = sum((f - mf) * (t - mt) for f, t in points) / var
    a = mt - b * mf
    if b < 0:
        return max(mt, 0.0), 0.0
    if a < 0:
        sff = sum(f * f for f in fs)
        return 0.0, max(sum(f * t for f, t in points) / sff, 0.0)
    return a, b


class LatencyCostModel:
    """Predicted latency of keep-sets from per-module timings (see the module doc).

    Callable ``keep -> predicted fraction of the original latency``, usable as the
    ``measure`` of :func:`cpd.plan.select.bisect_prefix`.
    """

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs, comb: CombResult,
                 groups: list[Group], *, batch_size: int = 1, round_to: int | None = None,
                 max_ratio: float = 0.95, probes: tuple[float, ...] = DEFAULT_PROBES,
                 warmup: int = 1, min_runs: int = 3, max_runs: int = 9,
                 max_seconds: float = 20.0) -> None:
        t0 = time.perf_counter()
        self.comb, self.groups = comb, groups
        self.round_to, self.max_ratio = round_to, max_ratio
        self.batch_size = batch_size
        # shape-only copy for counting work (real copy when the model cannot run on meta)
        try:
            meta = copy.deepcopy(model).to("meta")
            meta_inputs = to_device(example_inputs, "meta")
            full_work = module_work(meta, meta_inputs)
            self._work_model, self._work_inputs = meta, meta_inputs
        except Exception:  # noqa: BLE001 - data-dependent Python: count on real tensors
            self._work_model, self._work_inputs = model, example_inputs
            full_work = module_work(model, example_inputs)
        zeros = {g.id: torch.zeros(g.size) for g in groups}
        configs: list[Keep] = [{}]
        for r in probes:
            k = select_uniform(groups, zeros, r, round_to, max_ratio)
            if k and keep_key(k) not in {keep_key(c) for c in configs}:
                configs.append(k)
        works = [full_work] + [self.work(k) for k in configs[1:]]
        device = model_device(model, example_inputs)
        inputs = to_device(batch_like(example_inputs, batch_size), device)
        models = [model] + [apply_plan(model, Plan.from_comb(comb, k)) for k in configs[1:]]
        times, self.profile_rounds = profile_self_times(
            models, inputs, warmup=warmup, min_runs=min_runs, max_runs=max_runs,
            max_seconds=max_seconds)
        del models
        self.lines: dict[str, _Line] = {}
        for name in set().union(*times):
            fl, mem = full_work.get(name, (0.0, 0.0))
            use_flops = fl > 0
            full = fl if use_flops else mem
            pts = []
            for w, t in zip(works, times):
                wf, wm = w.get(name, (0.0, 0.0))
                f = ((wf if use_flops else wm) / full) if full > 0 else 1.0
                pts.append((f, t.get(name, 0.0)))
            a, b = _fit(pts)
            self.lines[name] = _Line(a, b, full, use_flops)
        #: measured (hooked) total of the original model, ms
        self.measured_ms = sum(times[0].values())
        self.probe_ms = [sum(t.values()) for t in times[1:]]
        self.base_ms = self.predict_ms({})
        self.evaluations = 0
        self.seconds = time.perf_counter() - t0

    def work(self, keep: Keep) -> dict[str, tuple[float, float]]:
        pm = apply_plan(self._work_model, Plan.from_comb(self.comb, keep))
        return module_work(pm, self._work_inputs)

    def predict_ms(self, keep: Keep) -> float:
        """Predicted latency (ms) at the profiled batch size."""
        work = self.work(keep) if keep else None
        total = 0.0
        for name, ln in self.lines.items():
            if work is None or ln.full <= 0:
                f = 1.0
            else:
                wf, wm = work.get(name, (0.0, 0.0))
                f = (wf if ln.use_flops else wm) / ln.full
            total += ln.a + ln.b * f
        return total

    def __call__(self, keep: Keep) -> float:
        self.evaluations += 1
        return self.predict_ms(keep) / max(self.base_ms, 1e-9)

    def channel_costs(self) -> dict[int, float]:
        """Group id -> predicted ms saved per removed channel (half the group removed)."""
        out: dict[int, float] = {}
        for g in self.groups:
            lo = min_keep(g, self.max_ratio, self.round_to or 1)
            step = _step(g, self.round_to)
            n_keep = max(lo, g.size - g.size // 2)
            n_keep = min(g.size, -(-n_keep // step) * step)
            if n_keep >= g.size:
                out[g.id] = 0.0
                continue
            saved = self.base_ms - self.predict_ms({g.id: list(range(n_keep))})
            out[g.id] = saved / (g.size - n_keep)
        return out
