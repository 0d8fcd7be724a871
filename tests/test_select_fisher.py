"""Interaction-aware selection: mask-gradient rows, their sketch, the greedy Fisher order."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from scores_models import F64, conv_bn, conv_bn_group, mask_grads, mlp, mlp_data, mlp_group, sum_mse
from torch import Tensor, nn

import cpd
from cpd.groups.group import Group, Member
from cpd.plan.hessian_rows import HessianRows
from cpd.plan.measure import Measurer
from cpd.plan.plan import Plan
from cpd.plan.row_sketch import RowSketch
from cpd.plan.select import keep_after, ranking, select_global
from cpd.plan.select_fisher import fisher_order
from cpd.scores import get_criterion


def _groups(*sizes: int) -> list[Group]:
    return [Group(i, s, [Member(f"w{i}", 0, [[c] for c in range(s)])]) for i, s in enumerate(sizes)]


def _split(m: Tensor, groups: list[Group]) -> dict[int, Tensor]:
    out, o = {}, 0
    for g in groups:
        out[g.id] = m[:, o:o + g.size]
        o += g.size
    return out


def _naive_greedy(m: Tensor, k: int) -> list[int]:
    """Reference: add the column that increases 1/2 ||sum of chosen columns||^2 the least."""
    chosen: list[int] = []
    u = torch.zeros(m.shape[0], dtype=F64)
    for _ in range(k):
        best = min((c for c in range(m.shape[1]) if c not in chosen),
                   key=lambda c: (float(0.5 * (u + m[:, c]).square().sum() - 0.5 * u.square().sum()), c))
        chosen.append(best)
        u = u + m[:, best]
    return chosen


# ------------------------------------------------------------------ RowSketch
def test_sketch_is_exact_until_max_rows_then_preserves_the_gram_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    blocks = [torch.randn(50, 7, generator=g) for _ in range(40)]  # 2000 rows, C = 7
    sk = RowSketch({3: 4, 5: 3}, max_rows=100)
    sk.add({3: blocks[0][:, :4], 5: blocks[0][:, 4:]})
    torch.testing.assert_close(sk.matrix(), blocks[0])
    assert not sk.sketched and sk.rows()[5].shape == (50, 3)
    for b in blocks[1:]:
        sk.add({3: b[:, :4], 5: b[:, 4:]})
    assert sk.sketched and sk.seen == 2000 and sk.matrix().shape == (100, 7)
    full = torch.cat(blocks).double()
    gram, approx = full.T @ full, sk.matrix().double().T @ sk.matrix().double()
    # JL: relative error ~ 1/sqrt(100) per entry scale; far from it if the scaling were off.
    assert float((approx - gram).norm() / gram.norm()) < 0.3
    again = RowSketch({3: 4, 5: 3}, max_rows=100)
    for b in blocks:
        again.add({3: b[:, :4], 5: b[:, 4:]})
    torch.testing.assert_close(again.matrix(), sk.matrix())  # seeded: reproducible
    sk.reset()
    assert sk.matrix().shape == (0, 7) and sk.seen == 0


def test_sketch_rejects_bad_rows() -> None:
    sk = RowSketch({0: 2, 1: 3})
    with pytest.raises(ValueError, match="missing"):
        sk.add({0: torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="expected"):
        sk.add({0: torch.zeros(4, 2), 1: torch.zeros(5, 3)})
    with pytest.raises(ValueError, match="max_rows"):
        RowSketch({0: 1}, max_rows=0)


# ---------------------------------------------------------------- HessianRows
@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_rows_are_the_per_sample_mask_gradients(method: str) -> None:
    model, x, y = conv_bn().eval(), torch.randn(6, 3, 5, 5, dtype=F64), torch.randn(6, 2, dtype=F64)
    group = conv_bn_group()
    crit = HessianRows(method=method).prepare(model, [group])
    crit.accumulate(model, x[:4], y[:4], sum_mse)
    crit.accumulate(model, x[4:], y[4:], sum_mse)
    want = mask_grads(model, group, x, y, sum_mse)  # library-independent reference
    torch.testing.assert_close(crit.rows()[0].double(), want, rtol=1e-5, atol=1e-6)
    plain = get_criterion("hessian", method=method).prepare(model, [group])
    plain.accumulate(model, x[:4], y[:4], sum_mse)
    plain.accumulate(model, x[4:], y[4:], sum_mse)
    torch.testing.assert_close(crit.scores(), plain.scores(), rtol=0, atol=0)  # same scores


def test_batch_form_keeps_one_row_per_batch_and_reset_forgets() -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data(8)
    crit = HessianRows(per_sample=False).prepare(model, [group])
    for i in range(0, 8, 2):
        crit.accumulate(model, x[i:i + 2], y[i:i + 2], sum_mse)
    rows = crit.rows()[0].double()
    assert rows.shape == (4, 6)
    torch.testing.assert_close(rows.square().sum(0), crit.scores()[0], rtol=1e-5, atol=0)
    crit.reset()
    assert crit.rows()[0].shape == (0, 6)


# ---------------------------------------------------------------- fisher_order
def test_greedy_order_is_the_exact_greedy_order() -> None:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(12, 3, generator=g, dtype=F64)
    m = base @ torch.randn(3, 9, generator=g, dtype=F64) + 0.1 * torch.randn(12, 9, generator=g, dtype=F64)
    groups = _groups(4, 5)
    limits = {0: 4, 1: 5}
    offset = {0: 0, 1: 4}
    for pool in (1, 3, 8, 256):  # small pools force refreshes and single-row misses
        got = [offset[gid] + c for gid, c in fisher_order(groups, _split(m, groups), limits, pool=pool)]
        assert got == _naive_greedy(m, 9), pool


def test_interactions_change_the_order_and_limits_hold() -> None:
    # Channels 0 and 1 of group 0 are the same direction (their removals add up
    # coherently); channel 0 of group 1 is orthogonal and a bit more important alone.
    v, w = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.2])
    rows = {0: torch.stack([v, v], 1), 1: w[:, None]}
    groups = _groups(2, 1)
    order = list(fisher_order(groups, rows, {0: 2, 1: 1}))
    assert order == [(0, 0), (1, 0), (0, 1)]  # diagonal ranking would say (0,0), (0,1), (1,0)
    assert ranking(groups, {0: torch.tensor([1.0, 1.0]), 1: torch.tensor([1.44])}, by_group_mean=False)[1] == (0, 1)
    assert list(fisher_order(groups, rows, {0: 1, 1: 0})) == [(0, 0)]
    assert list(fisher_order([], {}, {})) == []


# ------------------------------------------------------------ global selection
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).mean((2, 3)))


def test_prune_uses_the_interaction_aware_order_for_hessian() -> None:
    torch.manual_seed(0)
    model, x = _Net().eval(), torch.randn(1, 3, 8, 8)
    data = [(torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))) for _ in range(2)]
    res = cpd.prune(model, x, macs=0.5, importance="hessian", data=data, loss_fn=F.cross_entropy,
                    recalibrate=False)
    assert res.plan.meta["macs"] <= 0.5
    comb = cpd.comb(model, x)
    groups = comb.prunable()
    crit = HessianRows().prepare(model, groups)
    for xb, yb in data:
        crit.accumulate(model, xb, yb, F.cross_entropy)
    measure = Measurer(model, x, comb, "macs")
    keep, val = select_global(groups, crit.scores(), measure, 0.5, rows=crit.rows())
    assert val <= 0.5 and {int(k): v for k, v in res.plan.keep.items()} == Plan.from_comb(comb, keep).keep
    # minimal prefix: one channel fewer along the same greedy order misses the target
    limits = {g.id: g.size - 1 for g in groups}
    order = list(itertools.islice(fisher_order(groups, crit.rows(), limits), sum(g.size for g in groups)))
    k = next(i for i in range(len(order) + 1) if keep_after(groups, order, i) == keep)
    assert measure(keep_after(groups, order, k - 1)) > 0.5
