"""Property tests: random small nets and random kept-channel subsets.

For every generated net, every prunable group pruned to a random subset at once
must (a) never need a rollback and (b) compute exactly what the dense net computes
with those channels zeroed.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from masking import masked, random_keep, randomize_bn

import cpd
from cpd.apply.verify import apply_checked
from cpd.plan.plan import Plan

BLOCKS = ["conv", "residual", "cat", "split", "chunk", "grouped", "depthwise", "gate"]


def cbr(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups),
                         nn.BatchNorm2d(cout), nn.ReLU())


class RandomNet(nn.Module):
    """A chain of blocks described by ``spec``: (kind, width) pairs."""

    def __init__(self, spec: list[tuple[str, int]]) -> None:
        super().__init__()
        self.kinds: list[str] = []
        self.blocks = nn.ModuleList()
        c = 3
        self.stem = cbr(3, 4)
        c = 4
        for kind, w in spec:
            if kind == "conv":
                blk, c2 = cbr(c, w), w
            elif kind == "residual":
                blk, c2 = nn.Sequential(cbr(c, w), cbr(w, c)), c
            elif kind == "cat":
                blk, c2 = nn.ModuleList([cbr(c, w), cbr(c, w + 1)]), 2 * w + 1
            elif kind == "split" and c >= 2:
                a = max(1, c // 2)
                blk, c2 = nn.ModuleList([cbr(a, w), cbr(c - a, w)]), 2 * w
            elif kind == "chunk":
                blk, c2 = cbr(c, 2 * w), w
            elif kind == "grouped":
                blk, c2 = nn.Sequential(cbr(c, 2 * w), cbr(2 * w, 2 * w, groups=2)), 2 * w
            elif kind == "depthwise":
                blk, c2 = cbr(c, c, groups=c), c
            elif kind == "gate":
                blk, c2 = nn.Conv2d(c, c, 1), c
            else:
                continue
            self.kinds.append(kind)
            self.blocks.append(blk)
            c = c2
        self.fc = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for kind, blk in zip(self.kinds, self.blocks):
            if kind == "residual":
                x = x + blk(x)
            elif kind == "cat":
                x = torch.cat([blk[0](x), blk[1](x)], 1)
            elif kind == "split":
                a = max(1, x.shape[1] // 2)  # computed from the shape: follows pruning
                p, q = x.split([a, x.shape[1] - a], 1)
                x = torch.cat([blk[0](p), blk[1](q)], 1)
            elif kind == "chunk":
                p, q = blk(x).chunk(2, 1)
                x = p * q
            elif kind == "gate":
                x = x * torch.sigmoid(blk(x))
            else:
                x = blk(x)
        return self.fc(x.mean((2, 3)))


spec_strategy = st.lists(
    st.tuples(st.sampled_from(BLOCKS), st.integers(2, 6)), min_size=1, max_size=5
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=spec_strategy, seed=st.integers(0, 10_000))
def test_random_nets_prune_like_masks(spec: list[tuple[str, int]], seed: int) -> None:
    torch.manual_seed(seed)
    m = randomize_bn(RandomNet(spec), seed).eval()
    x = torch.randn(2, 3, 6, 6)
    comb = cpd.comb(m, x)
    keep = random_keep(comb, random.Random(seed))
    pm, plan, bad = apply_checked(m, x, Plan.from_comb(comb, keep), comb.output_shapes)
    assert bad == [], f"rolled back {bad} for {spec}"
    torch.testing.assert_close(pm(x), masked(m, comb, plan.keep)(x), rtol=1e-4, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(spec=spec_strategy, ratio=st.floats(0.0, 0.9))
def test_ratio_removes_that_fraction(spec: list[tuple[str, int]], ratio: float) -> None:
    torch.manual_seed(0)
    m = RandomNet(spec).eval()
    x = torch.randn(1, 3, 6, 6)
    res = cpd.prune(m, x, ratio=ratio)
    assert res.rolled_back == []
    for g in res.comb.prunable():
        kept = len(res.plan.keep.get(g.id, range(g.size)))
        # floor(size * ratio) removed, but never below the max_ratio=0.95 floor.
        expected = max(g.size - math.floor(g.size * ratio), max(1, math.ceil(g.size * 0.05)))
        assert kept == expected, (g.size, ratio, kept)
    assert res.model(x).shape == (1, 3)


@settings(max_examples=10, deadline=None)
@given(spec=spec_strategy)
def test_plan_json_round_trip(spec: list[tuple[str, int]]) -> None:
    torch.manual_seed(0)
    m = RandomNet(spec).eval()
    x = torch.randn(1, 3, 6, 6)
    res = cpd.prune(m, x, ratio=0.5)
    again = Plan.loads(res.plan.dumps())
    assert again.to_json() == res.plan.to_json()
    from cpd.apply.apply import apply_plan

    pm = apply_plan(m, again)
    assert torch.equal(pm(x), res.model(x))
