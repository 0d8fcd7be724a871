"""LR schedule values, schedule rebinding, config validation, optimizer groups."""

import math

import pytest
import torch
from torch import nn

from cpd.train import TrainConfig, WarmupSchedule, build_optimizer, lr_at


def test_warmup_then_cosine_values() -> None:
    kw = dict(base_lr=0.1, total_steps=110, warmup_steps=10, schedule="cosine")
    assert lr_at(0, **kw) == pytest.approx(0.01)  # (0 + 1) / 10 of the peak: step 0 is not wasted
    assert lr_at(4, **kw) == pytest.approx(0.05)
    assert lr_at(9, **kw) == pytest.approx(0.1)  # the last warmup step is at the peak
    assert lr_at(10, **kw) == pytest.approx(0.1)  # decay starts at the peak
    assert lr_at(35, **kw) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr_at(60, **kw) == pytest.approx(0.05)  # half-way through the decay
    assert lr_at(110, **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(500, **kw) == pytest.approx(0.0, abs=1e-12)  # clamped past the end


def test_poly_constant_and_min_lr() -> None:
    assert lr_at(60, base_lr=0.1, total_steps=110, warmup_steps=10, schedule="poly", power=0.9) == pytest.approx(0.1 * 0.5**0.9)
    assert lr_at(60, base_lr=0.1, total_steps=110, warmup_steps=10, schedule="constant") == pytest.approx(0.1)
    assert lr_at(60, base_lr=0.1, total_steps=110, warmup_steps=10, min_lr=0.02) == pytest.approx(0.02 + 0.08 * 0.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(60, base_lr=0.1, total_steps=110, schedule="step")


def test_schedule_writes_groups_and_rebinds_at_same_step() -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=123.0)
    sched = WarmupSchedule(opt, base_lr=0.1, total_steps=100, warmup_steps=10, step=5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.06)  # applied at construction
    sched.step = 50
    sched.apply()
    new_opt = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=1.0)
    rebound = sched.rebind(new_opt)
    assert rebound.step == 50
    assert new_opt.param_groups[0]["lr"] == pytest.approx(lr_at(50, base_lr=0.1, total_steps=100, warmup_steps=10))
    state = rebound.state_dict()
    fresh = WarmupSchedule(new_opt, base_lr=0.1, total_steps=100, warmup_steps=10)
    fresh.load_state_dict(state)
    assert fresh.step == 50
    with pytest.warns(UserWarning, match="recomputed for the new length"):
        WarmupSchedule(new_opt, base_lr=0.1, total_steps=99).load_state_dict(state)


def test_optimizer_skips_decay_on_biases_and_norms() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 1, 5, 5))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.05))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and all(p.ndim >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim <= 1 for p in no_decay["params"])
    assert isinstance(build_optimizer(model, TrainConfig(optimizer="sgd")), torch.optim.SGD)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(optimizer="lion"), "optimizer"),
        (dict(schedule="step"), "schedule"),
        (dict(amp="fp8"), "amp"),
        (dict(alpha=1.5), "alpha"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(resume=True), "out_dir"),
    ],
)
def test_config_rejects_bad_values(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    config = TrainConfig(max_steps=7, grad_clip=1.0, schedule="POLY")
    assert config.schedule == "poly"
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown option"):
        TrainConfig.from_dict({"learning_rate": 1.0})
