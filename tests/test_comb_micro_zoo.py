"""Comb on the micro-zoo: the expected groups exist, and pruned == masked dense."""

from __future__ import annotations

import random

import pytest
import torch
from masking import masked, random_keep, randomize_bn
from micro_zoo import ALL, EXACT, SDPA, Concat, Grouped, Norms, Spatial, Unbind, example

import cpd
from cpd.apply.verify import apply_checked
from cpd.plan.plan import Plan


def _build(cls: type) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(cls()).eval()


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_prune_nothing_is_identity(cls: type) -> None:
    m, x = _build(cls), example()
    res = cpd.prune(m, x, ratio=0.0)
    assert res.plan.keep == {}
    assert torch.equal(res.model(x), m(x))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_group_prunes_and_runs(cls: type) -> None:
    """Each prunable group on its own: the pruned model runs with the same output shape."""
    m, x = _build(cls), example()
    comb = cpd.comb(m, x)
    assert comb.prunable(head_dim=True), "every zoo model has something to prune"
    for g in comb.prunable(head_dim=True):
        keep = {g.id: list(range(0, g.size, 2))} if g.size > 1 else {}
        pm, plan, bad = apply_checked(m, x, Plan.from_comb(comb, keep), comb.output_shapes)
        assert bad == [], f"group {g.id} ({g.role}, {g.modules}) broke the model"
        assert pm(x).shape == m(x).shape


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cls", EXACT, ids=lambda c: c.__name__)
def test_pruned_equals_masked(cls: type, seed: int) -> None:
    """Random kept subsets in every group at once: the physically pruned model computes
    exactly what the dense model computes with the removed channels zeroed."""
    m, x = _build(cls), example()
    comb = cpd.comb(m, x)
    keep = random_keep(comb, random.Random(seed))
    pm, plan, bad = apply_checked(m, x, Plan.from_comb(comb, keep), comb.output_shapes)
    assert bad == []
    ref = masked(m, comb, plan.keep)
    torch.testing.assert_close(pm(x), ref(x), rtol=1e-4, atol=1e-5)
    assert cpd.count(pm, x)[1] < cpd.count(m, x)[1] or not plan.keep


def test_concat_offsets_are_mapped() -> None:
    m, x = _build(Concat), example()
    comb = cpd.comb(m, x)
    # b's 4 output channels sit at offsets 6..9 of c's input.
    g = next(g for g in comb.groups if any(mm.name == "b.0.weight" and mm.dim == 0 for mm in g.members))
    c_in = next(mm for mm in g.members if mm.name == "c.0.weight" and mm.dim == 1)
    assert c_in.index == [[6], [7], [8], [9]]
    # chunk(2): both halves shrink together, so the chunk count is pinned.
    assert any(gr.reasons == ["number of chunks"] for gr in comb.groups)


def test_heads_found_for_qkv_and_sdpa() -> None:
    for cls in (Unbind, SDPA):
        m, x = _build(cls), example()
        comb = cpd.comb(m, x)
        heads = [g for g in comb.groups if g.role == "heads"]
        assert len(heads) == 1 and heads[0].size == 4 and heads[0].prunable
        res = cpd.prune(m, x, ratio=0.5)
        assert res.rolled_back == []
        attr = "num_heads" if cls is Unbind else "heads"
        assert getattr(res.model, attr) == 2
        assert res.model(x).shape == m(x).shape


def test_head_dim_groups() -> None:
    """q.k contracts head_dim; v's head_dim is separate unless one attribute sizes
    both (SDPA's ``view(b, n, -1, self.hd)`` for q, k and v ties them)."""
    m, x = _build(Unbind), example()
    hd = [g for g in cpd.comb(m, x).groups if g.role == "head_dim"]
    # timm-style qkv: one reshape for all three, so one head_dim group.
    assert len(hd) == 1 and hd[0].size == 6 and hd[0].modules == ["proj", "qkv"]
    m, x = _build(SDPA), example()
    hd = [g for g in cpd.comb(m, x).groups if g.role == "head_dim"]
    assert len(hd) == 1 and hd[0].modules == ["k", "o", "q", "v"]
    res = cpd.prune(m, x, ratio=0.5, head_dim=True)
    assert res.rolled_back == [] and res.model.hd == 3 and res.model.heads == 2


def test_grouped_conv_prunes_whole_groups() -> None:
    m, x = _build(Grouped), example()
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == []
    assert res.model.g[0].groups == 2 and res.model.g[0].in_channels == 4
    assert res.model.dw[0].groups == res.model.dw[0].in_channels == 4


def test_group_norm_keeps_groups_consistent() -> None:
    m, x = _build(Norms), example()
    res = cpd.prune(m, x, ratio=0.5)
    assert res.rolled_back == []
    gn = res.model.gn
    assert gn.num_groups == 2 and gn.num_channels == 4 and gn.weight.shape == (4,)
    assert res.model(x).shape == m(x).shape


def test_pixel_shuffle_factors_are_frozen() -> None:
    m, x = _build(Spatial), example()
    comb = cpd.comb(m, x)
    ps = [g for g in comb.prunable(head_dim=True)
          if any(mm.name == "ps.weight" and mm.dim == 0 for mm in g.members)]
    assert [g.size for g in ps] == [4]  # only the C of C*r*r
    (mem,) = [mm for mm in ps[0].members if mm.name == "ps.weight" and mm.dim == 0]
    assert mem.index[1] == [4, 5, 6, 7]  # channel c owns rows c*r*r .. c*r*r + 3


def test_input_and_output_channels_are_frozen() -> None:
    m, x = _build(Unbind), example()
    comb = cpd.comb(m, x)
    frozen = {tuple(g.reasons) for g in comb.groups if not g.prunable}
    assert ("model input",) in frozen and ("model output",) in frozen


def test_caller_model_is_not_mutated() -> None:
    m, x = _build(Concat), example()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cpd.prune(m, x, ratio=0.5)
    after = m.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_inplace_mutates() -> None:
    m, x = _build(Concat), example()
    res = cpd.prune(m, x, ratio=0.5, inplace=True)
    assert res.model is m
    assert m.a[0].out_channels == 3
