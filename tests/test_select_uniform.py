"""Uniform allocation to a MACs or params target (``allocation="uniform"``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import cpd
from cpd.config import ConfigError, config_from_dict
from cpd.plan.measure import Measurer, channel_costs
from cpd.plan.schedule import IterativePruner
from cpd.plan.select import select_uniform
from cpd.plan.select_uniform import select_uniform_to


class Widths(nn.Module):
    """Three 3x3 convs of different widths at one resolution, then a 1x1 head."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 48)) -> None:
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            nn.Conv2d(3, a, 3, padding=1), nn.ReLU(),
            nn.Conv2d(a, b, 3, padding=1), nn.ReLU(),
            nn.Conv2d(b, c, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Conv2d(c, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, 5, H, W)``."""
        return self.head(self.body(x))


def _setup(widths: tuple[int, int, int] = (16, 32, 48), seed: int = 0):
    torch.manual_seed(seed)
    m, x = Widths(widths).eval(), torch.randn(1, 3, 8, 8)
    comb = cpd.comb(m, x)
    groups = comb.prunable()
    gen = torch.Generator().manual_seed(seed)
    scores = {g.id: torch.rand(g.size, generator=gen, dtype=torch.float64) for g in groups}
    return m, x, comb, groups, scores, Measurer(m, x, comb, "macs")


def _removed(groups, keep) -> dict[int, int]:
    return {g.id: g.size - len(keep.get(g.id, range(g.size))) for g in groups}


@pytest.mark.parametrize("target", [0.9, 0.7, 0.5, 0.3])
def test_meets_the_target_with_the_same_fraction_everywhere(target: float) -> None:
    _, _, _, groups, scores, measure = _setup()
    keep, val, frac = select_uniform_to(groups, scores, measure, target, max_ratio=0.9)
    assert val == pytest.approx(measure(keep)) and val <= target
    # every group lost floor(size * f) channels for the fraction f that missed, plus at
    # most one more (the fill-in step): the allocation is uniform up to one channel
    below = select_uniform(groups, scores, frac - 1e-6, None, 0.9)
    assert measure(below) > target
    for g in groups:
        n = _removed(groups, keep)[g.id]
        assert math.floor(g.size * (frac - 1e-6)) <= n <= math.floor(g.size * frac) + 1, (g.size, n, frac)
    # and close: within what the costliest single channel saves
    assert val > target - max(channel_costs(measure, groups).values())


@given(seed=st.integers(0, 10_000), target=st.floats(0.35, 0.95))
@settings(max_examples=20, deadline=None)
def test_keeps_the_highest_scored_channels_of_each_group(seed: int, target: float) -> None:
    _, _, _, groups, scores, measure = _setup(seed=seed % 7)
    gen = torch.Generator().manual_seed(seed)
    scores = {g: torch.rand(len(s), generator=gen, dtype=torch.float64) for g, s in scores.items()}
    keep, val, _ = select_uniform_to(groups, scores, measure, target, max_ratio=0.8)
    assert val <= target
    for gid, kept in keep.items():
        s = scores[gid]
        gone = [c for c in range(len(s)) if c not in kept]
        assert float(s[gone].max()) <= float(s[kept].min())  # lowest-scored go


def test_minus_inf_channels_go_first() -> None:
    _, _, _, groups, scores, measure = _setup()
    big = max(groups, key=lambda g: g.size)
    forced = [0, 3, 5]
    scores[big.id][forced] = float("-inf")
    keep, _, _ = select_uniform_to(groups, scores, measure, 0.8, max_ratio=0.9)
    assert not set(forced) & set(keep[big.id])


def test_unreachable_target_returns_the_max_ratio_keep() -> None:
    _, _, _, groups, scores, measure = _setup()
    keep, val, frac = select_uniform_to(groups, scores, measure, 0.01, max_ratio=0.5)
    assert frac == 0.5 and val > 0.01
    assert keep == select_uniform(groups, scores, 0.5, None, 0.5)


def test_round_to_is_respected() -> None:
    _, _, _, groups, scores, measure = _setup()
    keep, val, _ = select_uniform_to(groups, scores, measure, 0.6, round_to=8, max_ratio=0.9)
    assert val <= 0.6
    assert all(len(k) % 8 == 0 for k in keep.values())


def test_iterative_uniform_steps_are_monotone_and_land_on_the_target() -> None:
    m, x, *_ = _setup()
    data = [(torch.randn(4, 3, 8, 8), torch.randn(4, 5, 8, 8)) for _ in range(2)]
    res = cpd.prune(m, x, macs=0.5, steps=3, importance="taylor", allocation="uniform", data=data,
                    loss_fn=lambda o, t: ((o - t) ** 2).mean(), recalibrate=False)
    hist = res.plan.meta["history"]
    assert [r["removed"] for r in hist] == sorted(r["removed"] for r in hist)
    for rec in hist:
        assert rec["goal"] - 0.03 <= rec["achieved"] <= rec["goal"] + 1e-9, rec
    groups = res.comb.prunable()
    fracs = [n / g.size for g, n in zip(groups, _removed(groups, res.plan.keep).values())]
    assert max(fracs) - min(fracs) <= 1.0 / min(g.size for g in groups) + 1e-9
    assert res.model(x).shape == m(x).shape


def test_one_shot_uniform_ignores_how_scores_compare_across_groups() -> None:
    m, x, *_ = _setup()
    with torch.no_grad():  # half of the middle conv's filters look unimportant
        m.body[2].weight[:16].mul_(0.01)
    uni = cpd.prune(m, x, macs=0.5, importance="magnitude", allocation="uniform", max_ratio=0.9)
    glo = cpd.prune(m, x, macs=0.5, importance="magnitude", max_ratio=0.9)
    assert uni.plan.meta["macs"] <= 0.5 and glo.plan.meta["macs"] <= 0.5
    groups = uni.comb.prunable()
    mid = next(g for g in groups if g.size == 32)
    fr_uni = [n / g.size for g, n in zip(groups, _removed(groups, uni.plan.keep).values())]
    fr_glo = [n / g.size for g, n in zip(groups, _removed(groups, glo.plan.keep).values())]
    assert max(fr_uni) - min(fr_uni) <= 1.0 / 16 + 1e-9
    assert max(fr_glo) - min(fr_glo) > 0.2  # global took the weak filters first
    gone = set(range(32)) - set(uni.plan.keep[mid.id])
    assert gone and gone <= set(range(16))  # within the group, uniform takes weak ones too
    assert _removed(groups, glo.plan.keep)[mid.id] > _removed(groups, uni.plan.keep)[mid.id]


@pytest.mark.parametrize("kw, match", [
    (dict(macs=0.5, allocation="layerwise"), "allocation must be one of"),
    (dict(ratio=0.3, allocation="uniform"), "not ratio"),
    (dict(macs=0.5, allocation="uniform", cost="macs"), "drop one of them"),
])
def test_bad_allocation_is_a_clear_error(kw: dict, match: str) -> None:
    m, x, *_ = _setup()
    with pytest.raises(ValueError, match=match):
        IterativePruner(m, x, steps=2, importance="magnitude", **kw)


def test_config_checks_and_passes_allocation() -> None:
    base = {"model": {"source": "py:cli_models:tiny_cnn"}, "data": {"name": "digits"}}
    cfg = config_from_dict(base, ["prune.allocation=uniform"], where="c.yaml")
    assert cfg.prune.pruner_options()["allocation"] == "uniform"
    with pytest.raises(ConfigError, match="prune.allocation must be one of"):
        config_from_dict(base, ["prune.allocation=even"], where="c.yaml")
    with pytest.raises(ConfigError, match="not ratio"):
        config_from_dict(base, ["prune.allocation=uniform", "prune.macs=null", "prune.ratio=0.3"],
                         where="c.yaml")
