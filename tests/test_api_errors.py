"""Bad input gets a clear error; unknown ops freeze channels and are named."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from micro_zoo import Residual, example

import cpd


class UsesUnknownOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x).cumprod(1)  # cumprod has no channel rule
        return self.fc(self.b(y).mean((2, 3)))


def test_unknown_op_freezes_and_warns() -> None:
    m, x = UsesUnknownOp().eval(), example()
    with pytest.warns(UserWarning, match="aten.cumprod"):
        comb = cpd.comb(m, x)
    assert any("aten.cumprod" in k for k in comb.unknown_ops)
    by_member = {mm.name: g for g in comb.groups for mm in g.members if mm.dim == 0}
    assert not by_member["a.weight"].prunable
    assert "unsupported op" in by_member["a.weight"].reasons[0]
    assert by_member["b.weight"].prunable  # b's output channels never meet cumprod
    with pytest.warns(UserWarning):
        res = cpd.prune(m, x, ratio=0.5)
    assert res.model.a.out_channels == 8 and res.model.b.out_channels == 4
    assert res.model(x).shape == m(x).shape


@pytest.mark.parametrize("kw, msg", [
    ({"ratio": 1.0}, "ratio must be in"),
    ({"ratio": -0.1}, "ratio must be in"),
    ({"macs": 0.0}, "macs is a fraction"),
    ({"params": 1.5}, "params is a fraction"),
    ({}, "exactly one of"),
    ({"ratio": 0.3, "macs": 0.5}, "exactly one of"),
])
def test_bad_targets(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        cpd.prune(Residual().eval(), example(), **kw)


def test_bad_ignore_entry() -> None:
    with pytest.raises(ValueError, match="not a module of the model"):
        cpd.prune(Residual().eval(), example(), ratio=0.3, ignore=["nope"])


def test_ignore_keeps_module() -> None:
    res = cpd.prune(Residual().eval(), example(), ratio=0.5, ignore=["stem"])
    assert res.model.stem[0].out_channels == 8  # the stem's group includes the stream


def test_model_that_cannot_run() -> None:
    with pytest.raises(RuntimeError, match="failed on the example inputs"):
        cpd.comb(Residual().eval(), torch.randn(2, 5, 8, 8))


def test_bad_example_inputs_type() -> None:
    with pytest.raises(TypeError, match="example_inputs must be"):
        cpd.comb(Residual().eval(), "not a tensor")  # type: ignore[arg-type]


def test_data_criterion_needs_data() -> None:
    with pytest.raises(ValueError, match="needs data="):
        cpd.prune(Residual().eval(), example(), ratio=0.3, importance="hessian")


def test_unknown_criterion() -> None:
    with pytest.raises((ValueError, KeyError), match="nope"):
        cpd.prune(Residual().eval(), example(), ratio=0.3, importance="nope")


def _wide() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 48, 3, padding=1), nn.ReLU(), nn.Conv2d(48, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 48, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48 * 64, 10),
    ).eval()


@pytest.mark.parametrize("target", [0.7, 0.5, 0.3])
def test_macs_target_is_met(target: float) -> None:
    m, x = _wide(), example()
    base = cpd.count(m, x)[0]
    res = cpd.prune(m, x, macs=target)
    got = cpd.count(res.model, x)[0] / base
    assert target * 0.95 <= got <= target  # within 5% of the target, never above
    assert res.plan.meta["macs"] == pytest.approx(got)


def test_params_target_is_met() -> None:
    m, x = _wide(), example()
    res = cpd.prune(m, x, params=0.6)
    assert 0.57 <= res.params[1] / res.params[0] <= 0.6


def test_find_breaking_isolates_bad_groups_cheaply() -> None:
    from cpd.apply.verify import find_breaking

    bad = {3, 17}
    calls: list[list[int]] = []

    def works(gids: list[int]) -> bool:
        calls.append(gids)
        return not bad & set(gids)

    kept, rolled = find_breaking(list(range(40)), works)
    assert sorted(rolled) == [3, 17] and sorted(kept) == [g for g in range(40) if g not in bad]
    assert len(calls) < 30  # O(bad * log n), not one call per group


def test_bn_recalibration_after_pruning_uses_the_data() -> None:
    """With data, the pruned model's BatchNorm statistics are re-estimated on it
    (forward passes only): they equal the batch statistics of the pruned features."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    res = cpd.prune(m, x[:1], ratio=0.5, importance="taylor", data=[(x, y)], loss_fn=F.cross_entropy)
    assert res.plan.meta["bn_recalibrated_batches"] == 1
    feats = res.model[0](x)  # what the first BatchNorm saw during recalibration
    torch.testing.assert_close(res.model[1].running_mean, feats.mean((0, 2, 3)),
                               rtol=1e-4, atol=1e-5)
    assert not torch.equal(res.model[1].running_mean, torch.zeros(8))
    before = {k: v.clone() for k, v in res.model.state_dict().items() if "running" not in k}
    assert all(torch.equal(before[k], v) for k, v in res.model.state_dict().items() if k in before)
    off = cpd.prune(m, x[:1], ratio=0.5, importance="taylor", data=[(x, y)],
                    loss_fn=F.cross_entropy, recalibrate=False)
    assert "bn_recalibrated_batches" not in off.plan.meta
