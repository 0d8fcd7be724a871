"""Iterative schedule: each step lands on its goal whatever the scale of the scores.

Regression: removed channels used to be ranked at ``min(live) - 1``, which is above
live channels when scores are large (hessian scores > 1 are common); the monotone
fix-up then removed the earlier channels on top of the step's selection and every
step overshot its MACs goal (68 % at a 70 % target in the criteria benchmark).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import cpd


class Plain(nn.Module):
    """Four 3x3 convs of 128 channels: one channel costs about 0.5 % of the MACs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Conv2d(128, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, 4, H, W)``."""
        return self.head(self.body(x))


def _model(scale: float) -> Plain:
    torch.manual_seed(0)
    m = Plain().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_every_step_meets_its_goal_without_overshoot(scale: float, importance: str) -> None:
    m = _model(scale)
    x = torch.randn(2, 3, 12, 12)
    data = [(torch.randn(4, 3, 12, 12), torch.randn(4, 4, 12, 12)) for _ in range(2)]
    res = cpd.prune(m, x, macs=0.5, steps=4, importance=importance, data=data,
                    loss_fn=lambda o, t: ((o - t) ** 2).mean(), recalibrate=False)
    hist = res.plan.meta["history"]
    assert len(hist) == 4
    for rec in hist:
        # met, and by no more than a couple of channels' worth
        assert rec["goal"] - 0.012 <= rec["achieved"] <= rec["goal"] + 1e-9, rec
    assert 0.488 <= res.plan.meta["macs"] <= 0.5 + 1e-9
    # monotone: a later step never brings back a channel
    assert [r["removed"] for r in hist] == sorted(r["removed"] for r in hist)


def test_step_goal_holds_when_one_group_scores_far_above_the_others() -> None:
    """Scores on very different scales per group, 0 at masked channels (as hessian gives)."""
    from cpd.plan.schedule import IterativePruner

    m, x = _model(1.0), torch.randn(2, 3, 12, 12)
    pruner = IterativePruner(m, x, macs=0.6, steps=2, importance="magnitude")
    pruner.step(m)
    gen = torch.Generator().manual_seed(0)
    big = max(pruner.keep, key=lambda g: pruner.comb.group(g).size - len(pruner.keep[g]))

    def scores() -> dict[int, torch.Tensor]:
        out = {}
        for g in pruner.groups:
            s = torch.rand(g.size, generator=gen, dtype=torch.float64)
            if g.id == big:  # tightly spread and far above the others
                s = 1e6 * (1.0 + 0.01 * s)
            if g.id in pruner.keep:
                gone = torch.ones(g.size, dtype=torch.bool)
                gone[pruner.keep[g.id]] = False
                s[gone] = 0.0
            out[g.id] = s
        return out

    pruner.criterion.scores = scores  # type: ignore[method-assign]
    rec = pruner.step(m)
    assert rec["goal"] - 0.012 <= rec["achieved"] <= rec["goal"] + 1e-9, rec


def test_removed_channels_rank_first_and_do_not_skew_group_means() -> None:
    from cpd.plan.select import ranking

    groups = cpd.comb(_model(1.0), torch.randn(1, 3, 8, 8)).prunable()
    g0, g1 = groups[0], groups[1]
    s0 = torch.linspace(10.0, 20.0, g0.size)
    s0[:3] = float("-inf")  # removed by an earlier step
    s1 = torch.linspace(10.0, 20.0, g1.size)
    order = ranking([g0, g1], {g0.id: s0, g1.id: s1})
    assert order[:3] == [(g0.id, 0), (g0.id, 1), (g0.id, 2)]
    # the live channels of g0 are normalised by the mean of live scores only, so the
    # two groups interleave instead of all of g0 going first
    rest = [gid for gid, _ in order[3:13]]
    assert g1.id in rest and g0.id in rest
