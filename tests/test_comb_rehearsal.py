"""Sizes read in Python, checked by the rehearsal on fake tensors, and the ops added
with them (MHA's Python path, as_strided, fold/unfold): pruned == masked dense."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn as nn
from masking import built, masked, random_keep
from micro_zoo import example
from micro_zoo_hidden import (
    REHEARSED,
    CachedScale,
    ChecksWidth,
    CrossAttention,
    DerivedHeadDim,
    FoldUnfold,
    HeadDimFromWidth,
    ReadsOtherShape,
    Strided,
)

import cpd
from cpd.apply.verify import apply_checked
from cpd.groups.comb_result import CombResult
from cpd.plan.plan import Plan


def _member(comb: CombResult, name: str, dim: int) -> int:
    return next(g.id for g in comb.groups for mm in g.members if (mm.name, mm.dim) == (name, dim))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cls", REHEARSED, ids=lambda c: c.__name__)
def test_pruned_equals_masked(cls: type, seed: int) -> None:
    """Random kept subsets in every group: no group is rolled back and the pruned
    model computes what the dense model computes with those channels zeroed.
    (MultiheadAttention rescales by the pruned head_dim, so only its heads vary.)"""
    m, x = built(cls), example()
    comb = cpd.comb(m, x)
    assert comb.unknown_ops == {} and comb.checks["clean"], comb.checks
    keep = random_keep(comb, random.Random(seed), head_dim=cls is not CrossAttention)
    pm, plan, bad = apply_checked(m, x, Plan.from_comb(comb, keep), comb.output_shapes)
    assert bad == []
    torch.testing.assert_close(pm(x), masked(m, comb, plan.keep)(x), rtol=1e-4, atol=1e-5)


def test_size_read_from_another_tensor_ties_the_dims() -> None:
    """C = x.shape[-1] reshapes the conv output and the heads' output: both follow
    the block width, so removing a head removes its block of the width."""
    m, x = built(ReadsOtherShape), example()
    comb = cpd.comb(m, x)
    assert any("read from another dim" in f for f in comb.checks["fixes"])
    heads = _member(comb, "q.weight", 0)
    assert comb.group(heads).role == "heads" and comb.group(heads).size == 3
    assert _member(comb, "embed.weight", 0) == heads  # the width is heads x head_dim
    assert _member(comb, "sr.weight", 0) == heads
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == [] and res.model.embed.out_channels == 8
    assert res.model(x).shape == m(x).shape


def test_derived_size_freezes_its_source() -> None:
    """split([kd, kd, ratio * kd]): v's head size follows key_dim times a constant, so
    both head dims stay; whole heads still go."""
    m, x = built(DerivedHeadDim), example()
    comb = cpd.comb(m, x)
    frozen = [g for g in comb.groups if not g.prunable and any("derived" in r for r in g.reasons)]
    assert sorted(g.size for g in frozen) == [4, 8]  # key_dim and ratio * key_dim
    res = cpd.prune(m, x, ratio=0.5, head_dim=True)
    assert res.rolled_back == []
    assert (res.model.num_heads, res.model.key_dim) == (2, 4)
    assert res.model.out_dim == 2 * 8


def test_attribute_follows_the_dims_its_derived_size_needs() -> None:
    """head_dim = embed_dim // num_heads: embed_dim follows the heads' width, not the
    block width it also equals."""
    m, x = built(HeadDimFromWidth), example()
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == [] and res.model.num_heads == 2
    assert res.model.embed_dim == 2 * 4 and res.model.q.out_features == 8


def test_attribute_checked_by_the_model_follows_its_input() -> None:
    m, x = built(ChecksWidth), example()
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == [] and res.params[1] < res.params[0]
    assert res.model.b.num_channels == res.model.a.conv.out_channels == 4
    assert res.model.c.num_channels == res.model.b.conv.out_channels == 3


def test_multihead_attention_python_path() -> None:
    """query != key (learned probe) and kdim/vdim != embed_dim: the query width is
    heads x head_dim, heads prune on both modules and their sizes stay consistent."""
    m, x = built(CrossAttention), example()
    comb = cpd.comb(m, x)
    assert comb.group(_member(comb, "pool.in_proj_weight", 1)).role == "heads"
    assert comb.group(_member(comb, "cross.k_proj_weight", 1)).size == 6  # kdim: its own
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == []
    for mha in (res.model.pool, res.model.cross):
        assert mha.num_heads == 2 and mha.embed_dim == mha.out_proj.in_features == 8
    assert res.model.cross.kdim == res.model.cross.k_proj_weight.shape[1] == 3


def test_as_strided_and_fold_map_channels() -> None:
    m, x = built(Strided), example()
    comb = cpd.comb(m, x)
    assert _member(comb, "a.weight", 0) == _member(comb, "lin.weight", 1)
    m, x = built(FoldUnfold), example()
    comb = cpd.comb(m, x)
    assert _member(comb, "a.0.weight", 0) == _member(comb, "mix.weight", 1)
    assert _member(comb, "mix.weight", 0) == _member(comb, "b.0.weight", 1)


class _Overlapping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.fc = nn.Conv2d(3, 8, 1), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)  # windows of 4 channels, overlapping by 2: not a permutation
        return self.fc(torch.as_strided(y, (y.shape[0], 3, 4), (y[0].numel(), 2 * 64, 64)))


def test_as_strided_that_is_not_a_view_freezes() -> None:
    m, x = _Overlapping().eval(), example()
    comb = cpd.comb(m, x)
    g = comb.group(_member(comb, "a.weight", 0))
    assert not g.prunable and "as_strided" in g.reasons[0]


def test_stale_cache_is_dropped() -> None:
    """The cached tensor neither hides the weight from the trace nor survives pruning."""
    m, x = built(CachedScale), example()
    assert m.cache  # filled by the forward in _build
    comb = cpd.comb(m, x)
    assert _member(comb, "scale", 0) == _member(comb, "a.weight", 0)
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == [] and res.model.scale.shape == (4,)
    assert res.model(x).shape == m(x).shape


def test_checks_round_trip_and_no_inputs_no_rehearsal() -> None:
    from cpd.groups.build import build_groups
    from cpd.trace.recorder import trace

    m, x = built(ReadsOtherShape), example()
    comb = cpd.comb(m, x)
    back = CombResult.from_json(comb.to_json())
    assert back.checks == comb.checks and back.checks["rounds"] >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert build_groups(trace(m, x), m).checks == {}
