"""Latency targets: argument checks, the cost model, the search, and the end-to-end target.

Timing on a shared 2-core machine is noisy, so nothing here asserts a speed. The
end-to-end checks re-time with this file's own loop (interleaved runs, the calling
thread's CPU time, medians; torch runs one thread, see conftest.py) and accept a
wide band around the target; the search itself is tested with deterministic fake
timers.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
import torch.nn as nn
from micro_zoo import Residual, example

import cpd
from cpd.plan.latency_cost import LatencyCostModel
from cpd.plan.latency_search import select_latency
from cpd.plan.latency_timer import LatencyTimer, Timing
from cpd.plan.measure import Measurer
from cpd.plan.plan import Plan
from cpd.plan.select import keep_after, ranking


def cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def _cnn() -> nn.Module:
    """Conv-heavy enough (~5 ms) that compute, not Python, dominates its latency."""
    torch.manual_seed(0)
    return nn.Sequential(cbr(3, 32), cbr(32, 64), nn.MaxPool2d(2), cbr(64, 128), cbr(128, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)).eval()


X = torch.randn(1, 3, 64, 64)


def _retime(base: nn.Module, pruned: nn.Module, x: torch.Tensor, runs: int = 21) -> float:
    """Independent re-timing: median CPU-time ratio of interleaved runs."""
    def once(m: nn.Module) -> float:
        t0 = time.thread_time()
        m(x)
        return time.thread_time() - t0

    with torch.inference_mode():
        for _ in range(2):
            once(base), once(pruned)
        b, p = [], []
        for _ in range(runs):
            b.append(once(base))
            p.append(once(pruned))
    return statistics.median(p) / statistics.median(b)


# ---------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("kw, msg", [
    ({"latency": 0.0}, "latency is a fraction"),
    ({"latency": -0.5}, "latency is a fraction"),
    ({"latency": 1.5}, "latency is a fraction"),
    ({"latency": 0.5, "macs": 0.5}, "exactly one of"),
    ({"latency": 0.5, "ratio": 0.3}, "exactly one of"),
    ({"latency": 0.5, "latency_batch_size": 0}, "latency_batch_size"),
    ({"latency": 0.5, "latency_tol": 0.0}, "latency_tol"),
    ({"latency": 0.5, "latency_tol": 1.0}, "latency_tol"),
])
def test_bad_latency_arguments(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        cpd.prune(Residual().eval(), example(), **kw)


@pytest.mark.parametrize("kw, msg", [
    ({"latency": 0.0}, "latency is a fraction"),
    ({"latency": 2.0}, "latency is a fraction"),
    ({"latency": 0.5, "params": 0.5}, "exactly one of"),
])
def test_bad_latency_arguments_iterative(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        cpd.IterativePruner(Residual().eval(), example(), steps=2, importance="magnitude", **kw)


# ---------------------------------------------------------------------------- ranking

def test_ranking_divides_by_cost() -> None:
    comb = cpd.comb(_cnn(), X)
    g = comb.prunable()[:2]
    scores = {g[0].id: torch.ones(g[0].size), g[1].id: torch.ones(g[1].size)}
    order = ranking(g, scores, cost={g[0].id: 1.0, g[1].id: 10.0})
    # equal importance: the costly group's channels go first
    assert {gid for gid, _ in order[: g[1].size]} == {g[1].id}
    assert ranking(g, scores) == ranking(g, scores, cost=None)


# ---------------------------------------------------------------------------- cost model

class HiLo(nn.Module):
    """Groups whose channels cost very different amounts.

    MACs per channel of each group (the conv producing it, the layer reading it):
    hi1 (3 + 64) * 9 * 64^2 = 2.5M, hi2 32 * 9 * 64^2 + 16 * 9 * 16^2 = 1.2M,
    lo1 (64 + 16) * 9 * 16^2 = 0.18M, lo2 (16 + 256) * 9 * 16^2 = 0.63M (it feeds the
    256-wide lo3), lo3 16 * 9 * 16^2 + 10 = 0.04M (the wide layer itself, read only
    by the small classifier).
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hi1, self.hi2 = cbr(3, 32), cbr(32, 64)          # 64 x 64
        self.lo1, self.lo2 = cbr(64, 16), cbr(16, 16)         # 16 x 16
        self.lo3 = cbr(16, 256)
        self.fc = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hi2(self.hi1(x))
        x = nn.functional.max_pool2d(x, 4)
        x = self.lo3(self.lo2(self.lo1(x)))
        return self.fc(x.mean((2, 3)))


def test_cost_model_ranks_costly_channels_higher() -> None:
    m, x = HiLo().eval(), torch.randn(1, 3, 64, 64)
    comb = cpd.comb(m, x)
    groups = comb.prunable()
    cm = LatencyCostModel(m, x, comb, groups)
    cost = cm.channel_costs()
    macs = Measurer(m, x, comb, "macs")
    per_ch = {}
    for g in groups:
        n = g.size // 2
        per_ch[g.id] = (1.0 - macs({g.id: list(range(g.size - n))})) * macs.base / n
    # wherever one group's channels take >= 8x the MACs of another's, the measured
    # cost model agrees on which is costlier (closer pairs may differ: small convs
    # run at very different MACs/s)
    pairs = [(a, b) for a in per_ch for b in per_ch if per_ch[a] >= 8 * per_ch[b]]
    assert len(pairs) >= 4
    for a, b in pairs:
        assert cost[a] > cost[b], (a, b, cost, per_ch)
    # predictions are fractions that fall as channels go
    half = {g.id: list(range(g.size // 2)) for g in groups}
    assert cm({}) == pytest.approx(1.0)
    assert 0.0 < cm(half) < 0.9


# ---------------------------------------------------------------------------- the search

class _Fake:
    """Cost model and timer on a made-up latency: the cost model predicts the share
    of channels left; the "device" measures ``scale * share ** power``."""

    def __init__(self, groups: list, power: float, scale: float = 1.0) -> None:
        self.sizes = {g.id: g.size for g in groups}
        self.total = sum(self.sizes.values())
        self.power, self.scale, self.calls = power, scale, 0

    def predict(self, keep: dict) -> float:
        removed = sum(self.sizes[g] - len(k) for g, k in keep.items())
        return 1.0 - removed / self.total

    def timer(self, keep: dict) -> Timing:
        self.calls += 1
        f = min(1.0, self.scale * self.predict(keep) ** self.power)
        return Timing(f, 10.0, 10.0 * f, 5)


@pytest.mark.parametrize("power, scale", [(1.0, 1.0), (2.0, 1.0), (0.5, 1.0), (1.0, 1.3)])
def test_search_converges_on_a_distorted_latency(power: float, scale: float) -> None:
    comb = cpd.comb(_cnn(), X)
    groups = comb.prunable()
    fake = _Fake(groups, power, scale)
    scores = {g.id: torch.rand(g.size) for g in groups}
    order = ranking(groups, scores)
    keep, info = select_latency(groups, order, fake.predict, fake.timer, 0.5, tol=0.05,
                                max_ratio=0.95, max_timed=8)
    assert info.met and abs(info.achieved - 0.5) <= 0.05 * 0.5
    assert info.timings == fake.calls <= 8
    assert info.achieved == pytest.approx(fake.timer(keep).fraction)  # what was picked
    assert info.evaluations >= 1 and len(info.trace) == info.timings


def test_search_stops_when_target_unreachable() -> None:
    comb = cpd.comb(_cnn(), X)
    groups = comb.prunable()
    fake = _Fake(groups, 1.0)
    order = ranking(groups, {g.id: torch.rand(g.size) for g in groups})
    keep, info = select_latency(groups, order, fake.predict, fake.timer, 0.01, max_ratio=0.5)
    assert not info.met and info.timings == 1
    assert keep == keep_after(groups, order, len(order), None, 0.5)  # the most allowed


def test_timer_on_identical_models_is_about_one() -> None:
    m = _cnn()
    comb = cpd.comb(m, X)
    t = LatencyTimer(m, X, comb, max_runs=9)({})
    assert 0.7 < t.fraction < 1.4 and t.runs >= 3 and t.base_ms > 0


# ---------------------------------------------------------------------------- end to end

def test_latency_target_is_met() -> None:
    m = _cnn()
    res = cpd.prune(m, X, latency=0.5)
    meta = res.plan.meta
    assert meta["target_latency"] == 0.5
    assert meta["latency_batch_size"] == 1 and meta["latency_threads"] == torch.get_num_threads()
    search = meta["latency_search"]
    assert 1 <= search["timings"] <= 6 and search["evaluations"] >= 1
    assert len(search["trace"]) == search["timings"]
    # the recorded value is a measurement of the chosen model; generous band for noise
    assert 0.3 <= meta["latency"] <= 0.7
    assert meta["latency_ms"][1] < meta["latency_ms"][0]
    # independent re-timing of the result
    assert 0.3 <= _retime(m, res.model, X) <= 0.7
    assert res.model(X).shape == m(X).shape
    Plan.loads(res.plan.dumps())  # the record is plain JSON


def test_unreachable_latency_terminates() -> None:
    m = _cnn()
    res = cpd.prune(m, X, latency=0.01, max_ratio=0.5)
    search = res.plan.meta["latency_search"]
    assert not search["met"] and search["timings"] == 1
    assert res.plan.meta["latency"] > 0.01


def test_latency_batch_size() -> None:
    m = _cnn()
    res = cpd.prune(m, X, latency=0.6, latency_batch_size=2)
    assert res.plan.meta["latency_batch_size"] == 2
    assert 0.35 <= res.plan.meta["latency"] <= 0.85


def test_iterative_pruner_latency() -> None:
    m = _cnn()
    pruner = cpd.IterativePruner(m, X, latency=0.5, steps=2, importance="magnitude")
    removed = []
    for _ in range(2):
        rec = pruner.step(m)
        removed.append(rec["removed"])
    assert pruner.done and removed[0] < removed[1]
    assert [h["goal"] for h in pruner.history] == pytest.approx([0.75, 0.5])
    res = pruner.finalize(m)
    meta = res.plan.meta
    assert meta["target_latency"] == 0.5 and len(meta["history"]) == 2
    assert meta["latency_search"]["timings"] >= 2  # the last step's search + final timing
    assert 0.3 <= meta["latency"] <= 0.7
    assert res.model(X).shape == (1, 10)


def test_prune_steps_latency() -> None:
    res = cpd.prune(_cnn(), X, latency=0.6, steps=2)
    assert res.plan.meta["target_latency"] == 0.6
    assert 0.35 <= res.plan.meta["latency"] <= 0.85
