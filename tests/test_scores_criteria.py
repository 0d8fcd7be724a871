"""Properties every criterion shares, the simple criteria, the registry, validation."""

from __future__ import annotations

import pytest
import torch
from scores_models import (
    F64,
    Heads,
    conv_bn,
    conv_bn_group,
    heads_group,
    mask_grads,
    mlp,
    mlp_data,
    mlp_group,
    sum_mse,
)

from cpd.groups.group import Group, Member
from cpd.scores import available, get_criterion
from cpd.scores.channels import build_plans

ALL = ["hessian", "magnitude", "obd", "random", "taylor"]
DATA_DRIVEN = [
    ("hessian", {}),
    ("hessian", {"per_sample": False}),
    ("obd", {}),
    ("obd", {"diag": "fisher"}),
    ("taylor", {}),
]


def test_registry_names_and_unknown_name() -> None:
    assert available() == ALL
    assert type(get_criterion()).name == "hessian"  # the default
    for bad in ("Hessian", "fisher", ""):
        with pytest.raises(ValueError, match="valid names: hessian, magnitude, obd, random, taylor"):
            get_criterion(bad)
    with pytest.raises(TypeError):
        get_criterion("magnitude", seed=0)  # options are checked by the criterion


@pytest.mark.parametrize("name,options", [*DATA_DRIVEN, ("magnitude", {}), ("magnitude", {"p": 2})])
def test_all_zero_channel_scores_lowest(name: str, options: dict) -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data()
    with torch.no_grad():
        model[0].weight[3] = 0.0
        model[0].bias[3] = 0.0
        model[2].weight[:, 3] = 0.0
    crit = get_criterion(name, **options).prepare(model, [group])
    crit.accumulate(model, x, y, sum_mse)
    crit.accumulate(model, x[:3], y[:3], sum_mse)
    s = crit.scores()[0]
    assert s[3] == 0.0 and s.min() == 0.0
    if (name, options) != ("obd", {}):
        assert torch.all(torch.cat([s[:3], s[4:]]) > 0)
    # Hutchinson estimates of other channels may be negative (probe noise) and are
    # clamped to 0: they tie with the zero channel but never rank below it.


@pytest.mark.parametrize("name,options", [*DATA_DRIVEN, ("magnitude", {}), ("random", {})])
def test_buffers_are_ignored(name: str, options: dict) -> None:
    model = conv_bn().eval()
    x, y = torch.randn(4, 3, 5, 5, dtype=F64), torch.randn(4, 2, dtype=F64)
    results = []
    for with_buffers in (False, True):
        crit = get_criterion(name, **options).prepare(model, [conv_bn_group(with_buffers)])
        crit.accumulate(model, x, y, sum_mse)
        results.append(crit.scores()[0])
    assert torch.equal(results[0], results[1])
    # A group made of buffers only has nothing to score.
    only = Group(1, 4, [Member("bn.running_var", 0, [[i] for i in range(4)], is_param=False)])
    crit = get_criterion(name, **options).prepare(model, [only])
    crit.accumulate(model, x, y, sum_mse)
    if name != "random":
        assert torch.equal(crit.scores()[1], torch.zeros(4, dtype=F64))


def test_scores_shape_dtype_and_reset() -> None:
    model, groups = mlp(), [mlp_group(7), Group(9, 3, [Member("2.bias", 0, [[0], [1], [2]])])]
    x, y = mlp_data()
    for name in ALL:
        crit = get_criterion(name).prepare(model, groups)
        crit.accumulate(model, x, y, sum_mse)
        s = crit.scores()
        assert set(s) == {7, 9}
        assert s[7].shape == (6,) and s[9].shape == (3,)
        assert all(v.dtype == torch.float64 and v.device.type == "cpu" for v in s.values())
        if crit.requires_data:
            crit.reset()
            assert all(torch.equal(v, torch.zeros_like(v)) for v in crit.scores().values())
            assert crit.num_samples == 0


def test_random_is_seeded_and_order_independent() -> None:
    model = mlp()
    a, b = mlp_group(0), Group(1, 3, [Member("2.bias", 0, [[0], [1], [2]])])
    s0 = get_criterion("random", seed=0).prepare(model, [a, b]).scores()
    again = get_criterion("random", seed=0).prepare(model, [b, a]).scores()
    s1 = get_criterion("random", seed=1).prepare(model, [a, b]).scores()
    assert all(torch.equal(s0[g], again[g]) for g in (0, 1))
    assert not torch.equal(s0[0], s1[0]) and not torch.equal(s0[1], s1[1])
    assert not torch.equal(s0[0][:3], s0[1])  # groups get different streams
    assert all(torch.all((v >= 0) & (v < 1)) for v in s0.values())


def test_magnitude_norms_over_all_members_and_positions() -> None:
    torch.manual_seed(0)
    model, group = Heads().to(F64), heads_group()
    w1, b1, w2 = model.fc1.weight.detach(), model.fc1.bias.detach(), model.fc2.weight.detach()
    for p in (1, 2):
        s = get_criterion("magnitude", p=p).prepare(model, [group]).scores()[5]
        for h, sl in enumerate((slice(0, 4), slice(4, 8))):
            parts = torch.cat([w1[sl].flatten(), b1[sl], w2[:, sl].flatten()])
            torch.testing.assert_close(s[h], parts.abs().pow(p).sum().pow(1 / p))
    # Follows the weights at call time.
    crit = get_criterion("magnitude").prepare(model, [group])
    with torch.no_grad():
        model.fc1.weight.mul_(2)
    assert crit.scores()[5][0] > s[0]


def test_taylor_is_sum_of_absolute_batch_mask_gradients() -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data()
    crit = get_criterion("taylor").prepare(model, [group])
    crit.accumulate(model, x[:5], y[:5], sum_mse)
    crit.accumulate(model, x[5:], y[5:], sum_mse)
    g = mask_grads(model, group, x, y, sum_mse)  # (N, size); batch gradient = sum over samples
    expected = g[:5].sum(0).abs() + g[5:].sum(0).abs()
    torch.testing.assert_close(crit.scores()[0], expected, rtol=1e-9, atol=0)


def test_group_validation() -> None:
    model = mlp()
    bad = [
        (Group(0, 2, [Member("0.weights", 0, [[0], [1]])]), "not a parameter"),
        (Group(0, 2, [Member("0.weight", 2, [[0], [1]])]), "dim out of range"),
        (Group(0, 3, [Member("0.weight", 0, [[0], [1]])]), "index rows"),
        (Group(0, 2, [Member("0.weight", 0, [[0], [1, 2]])]), "widths"),
        (Group(0, 2, [Member("0.weight", 1, [[0], [5]])]), "out of range"),
    ]
    for group, msg in bad:
        with pytest.raises(ValueError, match=msg):
            build_plans(model, [group])
    with pytest.raises(ValueError, match="duplicate"):
        build_plans(model, [mlp_group(0), mlp_group(0)])
    with pytest.raises(RuntimeError, match="prepare"):
        get_criterion("hessian").scores()
    # Negative dims are normalised.
    assert build_plans(model, [Group(0, 2, [Member("0.weight", -1, [[0], [1]])])])[0].members[0].dim == 1


class Tied(torch.nn.Module):
    """An MLP whose first layer is also registered as ``alias``: tied parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()
        self.alias = self.net[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_tied_parameters_are_counted_once() -> None:
    model = Tied()
    x, y = mlp_data()
    group = mlp_group()
    group.members = [Member("net." + m.name, m.dim, m.index) for m in group.members]
    members = [Member("alias.weight", 0, m.index) if m.name == "net.0.weight" else m for m in group.members]
    aliased = Group(0, 6, members)
    a = get_criterion("hessian").prepare(model, [group])
    b = get_criterion("hessian").prepare(model, [aliased])
    a.accumulate(model, x, y, sum_mse)
    b.accumulate(model, x, y, sum_mse)
    torch.testing.assert_close(a.scores()[0], b.scores()[0], rtol=1e-12, atol=0)
    expected = mask_grads(model.net, mlp_group(), x, y, sum_mse).square().sum(0)
    torch.testing.assert_close(a.scores()[0], expected, rtol=1e-9, atol=0)
