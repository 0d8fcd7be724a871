"""The ``obd`` criterion: exactness, Hutchinson statistics, seeding, additivity."""

from __future__ import annotations

import pytest
import torch
from scores_models import (
    F64,
    TwoBranch,
    mlp,
    mlp_data,
    mlp_group,
    quadratic_case,
    removal_delta,
    sum_mse,
)

from cpd.groups.group import Group, Member
from cpd.scores import get_criterion

RTOL = 1e-9  # exact identities in float64, see test_scores_hessian.py


@pytest.mark.parametrize("options", [{}, {"n_probes": 3}, {"diag": "fisher"}, {"diag": "fisher", "method": "loop"}])
def test_matches_exact_second_order_change(options: dict) -> None:
    # Diagonal weight Hessian and zero gradient: OBD's approximations are all exact,
    # and a single Rademacher probe recovers a diagonal Hessian exactly (z_i^2 = 1).
    model, group, x, y = quadratic_case()
    crit = get_criterion("obd", **options).prepare(model, [group])
    crit.accumulate(model, x, y, sum_mse)
    torch.testing.assert_close(crit.scores()[0], removal_delta(model, group, x, y, sum_mse), rtol=RTOL, atol=0)


def test_hutchinson_is_unbiased_for_a_dense_hessian() -> None:
    # Random features: the weight Hessian H = X^T X is dense. One probe estimates
    # H_ii + sum_{j != i} H_ij z_i z_j, error variance sum_{j != i} H_ij^2; K probes
    # divide it by K. A channel score 1/2 sum_i w_i^2 D_i has error std at most
    # sum_i 1/2 w_i^2 std_i (triangle inequality), and we allow 4 of those.
    # (Seeded, so not flaky; the bound is what makes the tolerance meaningful.)
    c, k = 4, 256
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2 * c, generator=gen, dtype=F64)
    model = TwoBranch(c).to(F64)
    y = torch.randn(12, 1, generator=gen, dtype=F64)
    idx = [[i] for i in range(c)]
    group = Group(0, c, [Member("a.weight", 1, idx), Member("b.weight", 1, idx)])
    crit = get_criterion("obd", n_probes=k, seed=1, clamp=False).prepare(model, [group])
    crit.accumulate(model, x, y, sum_mse)

    h = x.T @ x  # Hessian of 1/2 sum (w.x - y)^2 w.r.t. w = (a, b)
    w = torch.cat([model.a.weight[0], model.b.weight[0]]).detach()
    std = ((h.square().sum(1) - h.diag().square()) / k).sqrt()
    exact = 0.5 * w.square() * h.diag()
    bound = 0.5 * w.square() * std
    exact_c, bound_c = exact[:c] + exact[c:], bound[:c] + bound[c:]
    err = (crit.scores()[0] - exact_c).abs()
    assert torch.all(err <= 4 * bound_c), (err, bound_c)
    assert torch.all(bound_c < 0.25 * exact_c)  # the test has teeth


def test_seeded_and_reproducible() -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data()

    def run(seed: int) -> torch.Tensor:
        crit = get_criterion("obd", seed=seed, clamp=False).prepare(model, [group])
        crit.accumulate(model, x, y, sum_mse)
        crit.accumulate(model, x, y, sum_mse)
        return crit.scores()[0]

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_sums_over_members() -> None:
    # Per-element saliencies, so a group spanning fc1 and fc2 scores the sum of the
    # groups of fc1 alone and fc2 alone; probes are drawn per parameter, in one fixed
    # order, so they are the same in all three groups.
    model, full = mlp(), mlp_group(0)
    x, y = mlp_data()
    first = Group(1, 6, full.members[:2])
    second = Group(2, 6, full.members[2:])
    for options in ({"clamp": False}, {"diag": "fisher"}):
        crit = get_criterion("obd", **options).prepare(model, [full, first, second])
        crit.accumulate(model, x, y, sum_mse)
        s = crit.scores()
        torch.testing.assert_close(s[0], s[1] + s[2], rtol=RTOL, atol=1e-15)


def test_accumulate_loss_keeps_the_graph_for_the_caller() -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data()
    ref = get_criterion("obd", clamp=False).prepare(model, [group])
    ref.accumulate(model, x, y, sum_mse)
    crit = get_criterion("obd", clamp=False).prepare(model, [group])
    loss = sum_mse(model(x), y)
    crit.accumulate_loss(model, loss)
    loss.backward()  # still possible: the criterion retained the graph
    torch.testing.assert_close(crit.scores()[0], ref.scores()[0], rtol=RTOL, atol=0)
    with pytest.raises(ValueError, match="graph"):
        crit.accumulate_grads(model)


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="diag"):
        get_criterion("obd", diag="exact")
    with pytest.raises(ValueError, match="n_probes"):
        get_criterion("obd", n_probes=0)
