"""The ``hessian`` criterion: exactness, per-sample engines, batch norm, entry points."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
from scores_models import (
    F64,
    Heads,
    conv_bn,
    conv_bn_group,
    heads_group,
    mask_grads,
    mean_mse,
    mlp,
    mlp_data,
    mlp_group,
    quadratic_case,
    removal_delta,
    sum_mse,
)
from torch import nn

from cpd.scores import HessianCriterion, get_criterion

# float64 throughout: the quantities are O(1..100) and every identity below is exact
# algebra, so only rounding separates the two sides (relative error ~1e-14); 1e-9
# leaves a wide margin while still catching any real discrepancy (O(1) or O(1/N)).
RTOL = 1e-9


@pytest.mark.parametrize("method", ["hooks", "vmap", "loop"])
@pytest.mark.parametrize("loss_fn", [sum_mse, mean_mse], ids=["sum", "mean"])
def test_matches_exact_second_order_change(method: str, loss_fn) -> None:
    # Quadratic in the mask, zero gradient, |residual| = 1: the empirical Fisher is the
    # exact Hessian, so removing channel c changes the summed loss by exactly s_c / 2.
    # With a mean loss the per-sample convention (each sample's loss on its own) gives
    # the same scores as with a sum loss.
    model, group, x, y = quadratic_case()
    crit = get_criterion("hessian", method=method).prepare(model, [group])
    crit.accumulate(model, x, y, loss_fn)
    delta = removal_delta(model, group, x, y, sum_mse)
    assert torch.all(delta > 0.1)
    torch.testing.assert_close(crit.scores()[0] / 2, delta, rtol=RTOL, atol=0)


def test_batch_form_differs_where_gradients_cancel() -> None:
    # In the quadratic case each sample has a twin with the opposite residual: the batch
    # gradient is zero, so squaring it scores nothing, while per-sample Fisher does not.
    model, group, x, y = quadratic_case()
    per_sample = get_criterion("hessian").prepare(model, [group])
    batch = get_criterion("hessian", per_sample=False).prepare(model, [group])
    per_sample.accumulate(model, x, y, sum_mse)
    batch.accumulate(model, x, y, sum_mse)
    assert torch.all(per_sample.scores()[0] > 0.1)
    torch.testing.assert_close(batch.scores()[0], torch.zeros(4, dtype=F64), atol=1e-20, rtol=0)
    # With batches of one the two forms coincide.
    batch.reset()
    for n in range(len(x)):
        batch.accumulate(model, x[n : n + 1], y[n : n + 1], sum_mse)
    torch.testing.assert_close(batch.scores()[0], per_sample.scores()[0], rtol=RTOL, atol=0)


@pytest.mark.parametrize(
    "case",
    ["mlp", "heads", "conv_bn"],
)
@pytest.mark.parametrize("method", ["hooks", "vmap", "loop"])
def test_equals_squared_explicit_mask_gradient(case: str, method: str) -> None:
    # sum_i w_i dL_n/dw_i over all param members == d L_n / d mask_c (chain rule), for a
    # group spanning two layers, for multi-position (head) channels and through BN.
    if case == "mlp":
        model, group = mlp(), mlp_group()
        x, y = mlp_data()
    elif case == "heads":
        torch.manual_seed(0)
        model, group = Heads().to(F64), heads_group()
        x, y = torch.randn(8, 4, dtype=F64), torch.randn(8, 2, dtype=F64)
    else:
        model, group = conv_bn().eval(), conv_bn_group()
        x, y = torch.randn(8, 3, 5, 5, dtype=F64), torch.randn(8, 2, dtype=F64)
    crit = get_criterion("hessian", method=method, chunk_size=3).prepare(model, [group])
    crit.accumulate(model, x, y, sum_mse)
    expected = mask_grads(model, group, x, y, sum_mse).square().sum(0)
    torch.testing.assert_close(crit.scores()[group.id], expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_batchnorm_in_train_mode_is_scored_in_eval_mode_without_side_effects(method: str) -> None:
    model = conv_bn().train()
    group = conv_bn_group()
    x, y = torch.randn(6, 3, 5, 5, dtype=F64), torch.randn(6, 2, dtype=F64)
    stats = (model.bn.running_mean.clone(), model.bn.running_var.clone(), model.bn.num_batches_tracked.clone())
    crit = get_criterion("hessian", method=method).prepare(model, [group])  # neither engine may fail
    crit.accumulate(model, x, y, sum_mse)
    assert model.training and model.bn.training
    for before, after in zip(stats, (model.bn.running_mean, model.bn.running_var, model.bn.num_batches_tracked)):
        assert torch.equal(before, after)
    expected = mask_grads(model.eval(), group, x, y, sum_mse).square().sum(0)
    torch.testing.assert_close(crit.scores()[0], expected, rtol=RTOL, atol=0)


def test_per_sample_refuses_batch_statistics() -> None:
    model = conv_bn().train()
    crit = get_criterion("hessian", norm_eval=False).prepare(model, [conv_bn_group()])
    with pytest.raises(ValueError, match="batch-norm"):
        crit.accumulate(model, torch.randn(4, 3, 5, 5, dtype=F64), torch.randn(4, 2, dtype=F64), sum_mse)


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot trace ``if tensor``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        return out * 2 if bool(out.sum() > 0) else out


def test_auto_falls_back_to_loop_when_vmap_fails() -> None:
    torch.manual_seed(0)
    model = Branchy().to(F64)
    from cpd.groups.group import Group, Member

    group = Group(0, 2, [Member("fc.weight", 0, [[0], [1]]), Member("fc.bias", 0, [[0], [1]])])
    x, y = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    auto = get_criterion("hessian").prepare(model, [group])
    with pytest.warns(RuntimeWarning, match="falling back"):
        auto.accumulate(model, x, y, sum_mse)
    loop = get_criterion("hessian", method="loop").prepare(model, [group])
    loop.accumulate(model, x, y, sum_mse)
    torch.testing.assert_close(auto.scores()[0], loop.scores()[0], rtol=0, atol=0)
    with pytest.raises(RuntimeError):  # method="vmap" does not fall back
        get_criterion("hessian", method="vmap").prepare(model, [group]).accumulate(model, x, y, sum_mse)


class KwargsModel(nn.Module):
    """Hugging Face style: keyword inputs, returns an object with ``.loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor, scale: float = 1.0) -> SimpleNamespace:
        logits = self.net(pixel_values) * scale
        return SimpleNamespace(logits=logits, loss=sum_mse(logits, labels))


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_keyword_inputs_and_model_computed_loss(method: str) -> None:
    model = KwargsModel()
    group = mlp_group()
    group.members = [type(m)("net." + m.name, m.dim, m.index) for m in group.members]
    x, y = mlp_data()
    crit = get_criterion("hessian", method=method).prepare(model, [group])
    crit.accumulate(model, {"pixel_values": x, "labels": y, "scale": 1.0})  # default loss: outputs.loss
    expected = mask_grads(mlp(), mlp_group(), x, y, sum_mse).square().sum(0)
    torch.testing.assert_close(crit.scores()[0], expected, rtol=RTOL, atol=0)


def test_tuple_inputs_and_tuple_targets() -> None:
    # Distillation-style: targets carry labels and teacher outputs, both sliced per sample.
    model, group = mlp(), mlp_group()
    x, y = mlp_data()
    teacher = torch.randn_like(y)

    def loss_fn(out: torch.Tensor, t: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return sum_mse(out, t[0]) + 0.5 * sum_mse(out, t[1])

    crit = get_criterion("hessian").prepare(model, [group])
    crit.accumulate(model, (x,), (y, teacher), loss_fn)
    ref = get_criterion("hessian", method="loop").prepare(model, [group])
    ref.accumulate(model, x, (y, teacher), loss_fn)
    torch.testing.assert_close(crit.scores()[0], ref.scores()[0], rtol=RTOL, atol=0)


def test_lower_level_entry_points_and_no_grad_side_effects() -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data()
    direct = get_criterion("hessian").prepare(model, [group])
    direct.accumulate(model, x, y, sum_mse)
    assert all(p.grad is None for p in model.parameters())  # .grad is the caller's

    # A caller's own loop: per-sample losses with their graph...
    via_loss = get_criterion("hessian").prepare(model, [group])
    out = model(x)
    via_loss.accumulate_loss(model, 0.5 * (out - y).square().sum(1))
    torch.testing.assert_close(via_loss.scores()[0], direct.scores()[0], rtol=RTOL, atol=0)

    # ...or gradients it already has, per batch (the authors' form) or per sample.
    batch = get_criterion("hessian", per_sample=False).prepare(model, [group])
    batch.accumulate(model, x, y, sum_mse)
    sum_mse(model(x), y).backward()
    from_grads = HessianCriterion().prepare(model, [group])
    from_grads.accumulate_grads(model)
    torch.testing.assert_close(from_grads.scores()[0], batch.scores()[0], rtol=RTOL, atol=0)
    model.zero_grad(set_to_none=True)

    per_sample_grads = {k: [] for k, _ in model.named_parameters()}
    for n in range(len(x)):
        grads = torch.autograd.grad(sum_mse(model(x[n : n + 1]), y[n : n + 1]), list(model.parameters()))
        for (k, _), g in zip(model.named_parameters(), grads):
            per_sample_grads[k].append(g)
    from_ps = HessianCriterion().prepare(model, [group])
    from_ps.accumulate_grads(model, {k: torch.stack(v) for k, v in per_sample_grads.items()}, per_sample=True)
    torch.testing.assert_close(from_ps.scores()[0], direct.scores()[0], rtol=RTOL, atol=0)
    assert from_ps.num_samples == len(x)


def test_scalar_loss_is_required() -> None:
    model, group = mlp(), mlp_group()
    x, y = mlp_data()
    crit = get_criterion("hessian", per_sample=False).prepare(model, [group])
    with pytest.raises(ValueError, match="scalar"):
        crit.accumulate(model, x, y, lambda o, t: (o - t).square())


def test_auto_does_not_hide_a_broken_model_behind_the_fallback() -> None:
    model, group = mlp(), mlp_group()
    crit = get_criterion("hessian").prepare(model, [group])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "falling back" warning: the loop fails too
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            crit.accumulate(model, torch.randn(4, 7, dtype=F64), torch.randn(4, 3, dtype=F64), sum_mse)
    assert not crit._engine._vmap_failed
