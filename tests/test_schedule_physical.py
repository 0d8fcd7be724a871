"""Iterative pruning with physical removal at every step (``mode="physical"``).

For the same scores, mask mode and physical mode must choose the same channels, give
the same architecture and, where masking is exact, the same outputs; the plan of a
physical run must rebuild its model from the original architecture; and a physical
schedule inside the trainer must resume exactly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from micro_zoo import SDPA, Concat, Grouped, Residual, Transposed, Unbind, example
from torch import nn
from torch.utils.data import Subset

import cpd
import cpd.plan.physical as physical
from cpd.apply.apply import apply_plan
from cpd.data import build_dataset
from cpd.pipeline.prune_callback import PruneDuringTraining
from cpd.plan.plan import Plan
from cpd.tasks import build_task
from cpd.train import Callback, TrainConfig, Trainer, list_checkpoints


def unbind8() -> nn.Module:
    """timm-style attention with 8 heads (more steps of head pruning than 4 heads)."""
    return Unbind(dim=48, heads=8)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def assert_same_tensors(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("cls, target", [
    *[(c, {"ratio": 0.6}) for c in (Residual, Concat, unbind8, SDPA, Grouped, Transposed)],
    (Concat, {"macs": 0.4}), (SDPA, {"macs": 0.4}),
    (Transposed, {"macs": 0.4}),  # a group drops to one channel
    (unbind8, {"params": 0.5}), (Grouped, {"params": 0.5}),
])
def test_mask_and_physical_choose_the_same_channels_step_by_step(cls: Any, target: dict) -> None:
    """Magnitude (data-free, deterministic), no training between steps: after every step
    both modes hold the same keep-set, and the physically pruned model computes what the
    masked dense model computes (these models have no norm across the pruned dim)."""
    torch.manual_seed(0)
    x = example()
    masked = cls().eval()
    small = copy.deepcopy(masked)
    pm = cpd.IterativePruner(masked, x, steps=3, importance="magnitude", **target)
    pp = cpd.IterativePruner(small, x, steps=3, importance="magnitude", mode="physical", **target)
    n_params = sum(p.numel() for p in small.parameters())
    for _ in range(3):
        pm.step(masked)
        pp.step(small)
        assert pp.keep == pm.keep
        assert pp.history[-1] == pm.history[-1]
        with torch.no_grad():
            torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    assert pm.keep, "the target must remove channels for this test to mean anything"
    assert sum(p.numel() for p in small.parameters()) < n_params  # shrank in place
    rm, rp = pm.finalize(masked), pp.finalize(small)
    assert rp.plan.keep == rm.plan.keep
    assert shapes(rp.model) == shapes(rm.model)
    assert rp.macs == rm.macs and rp.params == rm.params
    assert rp.plan.meta["mode"] == "physical" and rm.plan.meta["mode"] == "mask"


@pytest.mark.parametrize("cls, importance, target", [
    (Concat, "taylor", {"ratio": 0.6}),
    (unbind8, "hessian", {"ratio": 0.6}),
    (Residual, "hessian", {"macs": 0.4}),
])
def test_data_criterion_gives_the_same_plan(cls: Any, importance: str, target: dict) -> None:
    """A data criterion on one fixed batch per step: scores of the smaller model, mapped
    back to the original channels, select what the masked model's scores select."""
    torch.manual_seed(0)
    model = cls().eval()
    x = example()
    data = [(x, torch.tensor([0, 3]))]
    kw: dict[str, Any] = dict(steps=3, importance=importance, data=data, loss_fn=F.cross_entropy,
                              recalibrate=False, **target)
    rm = cpd.prune(model, x, mode="mask", **kw)
    rp = cpd.prune(model, x, mode="physical", **kw)
    assert rm.plan.keep and rp.plan.keep == rm.plan.keep
    assert shapes(rp.model) == shapes(rm.model)
    with torch.no_grad():
        torch.testing.assert_close(rp.model(x), rm.model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [Concat, SDPA])
def test_physical_plan_rebuilds_the_model_from_the_original(cls: type) -> None:
    """The cumulative plan is in the original index space: applied (after a JSON round
    trip) to the original architecture with the same weights it gives the same model."""
    torch.manual_seed(0)
    model = cls().eval()
    x = example()
    res = cpd.prune(model, x, macs=0.4, steps=3, importance="magnitude", mode="physical")
    rebuilt = apply_plan(model, Plan.loads(res.plan.dumps()))
    assert_same_tensors(rebuilt, res.model)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), res.model(x))
    assert sum(p.numel() for p in model.parameters()) == res.params[0]  # caller's model untouched


@pytest.mark.parametrize("cls", [Residual, Concat, Grouped, SDPA, Transposed])
def test_current_groups_match_a_fresh_comb_of_the_pruned_model(cls: Any) -> None:
    """The groups physical mode derives for the pruned model (original ids, current
    positions) are the groups a new trace of that model finds: same member dims and,
    channel by channel, the same positions."""
    torch.manual_seed(0)
    model, x = cls().eval(), example()
    comb = cpd.comb(model, x)
    groups = comb.prunable()
    keep = {g.id: list(range(0, g.size, 2)) if g.size >= 4 else list(range(g.size))
            for g in groups}
    pruned = apply_plan(model, Plan.from_comb(comb, keep))
    derived = physical.current_groups(comb, groups, keep)
    def key(g: Any) -> tuple:  # heads and head_dim groups share member dims: add the role
        return frozenset((m.name, m.dim) for m in g.members), g.role

    fresh = {key(g): g for g in cpd.comb(pruned, x).groups}
    assert [g.id for g in derived] == [g.id for g in groups]
    for g in derived:
        assert g.size == len(keep[g.id])
        twin = fresh[key(g)]
        rows = {(m.name, m.dim): m.index for m in twin.members}
        for m in g.members:
            assert m.index == rows[(m.name, m.dim)], (g.id, m.name)


def test_heads_keep_pruning_through_size_coincidences() -> None:
    """Three heads left next to a (3, heads, head_dim) qkv reshape: a re-trace of the
    pruned model cannot tell those dims apart, but physical mode does not re-trace, so
    it prunes exactly like mask mode."""
    torch.manual_seed(0)
    model, x = Unbind(dim=32, heads=4).eval(), example()
    res = {mode: cpd.prune(model, x, ratio=0.5, steps=2, importance="magnitude", mode=mode)
           for mode in ("mask", "physical")}
    assert res["mask"].plan.keep == res["physical"].plan.keep
    assert shapes(res["mask"].model) == shapes(res["physical"].model)
    assert res["physical"].model.num_heads == 2  # 4 -> 3 (the coincidence) -> 2


def test_relative_plan_composes_and_never_brings_channels_back() -> None:
    """Two increments on the pruned model equal the cumulative plan on the original."""
    torch.manual_seed(0)
    model, x = Residual().eval(), example()
    comb = cpd.comb(model, x)
    gid = comb.prunable()[0].id
    old, new = {gid: [0, 2, 3, 5, 7]}, {gid: [2, 5, 7]}
    first = apply_plan(model, physical.relative_plan(comb, {}, old))
    second = apply_plan(first, physical.relative_plan(comb, old, new))
    assert_same_tensors(second, apply_plan(model, Plan.from_comb(comb, new)))
    with pytest.raises(ValueError, match="bring back removed channels"):
        physical.relative_plan(comb, new, old)


def test_bad_mode_is_one_line_error() -> None:
    with pytest.raises(ValueError, match="mode must be 'mask'.*got 'phys'") as info:
        cpd.prune(Residual().eval(), example(), ratio=0.5, steps=2, mode="phys")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- training

def cnn(seed: int = 0) -> nn.Module:
    """BatchNorm (running statistics) and dropout (RNG) make exact resume non-trivial."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(), nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    return Subset(build_dataset("digits", split="train"), range(128)), Subset(build_dataset("digits", split="val"), range(64))


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        if step == self.at:
            raise KeyboardInterrupt("simulated kill")


class Widths(Callback):
    """Records the student's first conv width after every step (shrinks at each pruning step)."""

    def __init__(self) -> None:
        self.widths: list[int] = []

    def on_step_end(self, trainer, step):  # type: ignore[no-untyped-def]
        self.widths.append(trainer.model[0].out_channels)


def fit(digits: Any, out: Path, extra: list[Callback], **kw: Any) -> tuple[Trainer, PruneDuringTraining]:
    cb = PruneDuringTraining(cnn(), torch.zeros(1, 1, 8, 8), steps=3, interval=2, mode="physical",
                             ratio=0.5, importance="taylor")
    config = TrainConfig(max_steps=10, batch_size=32, lr=3e-3, warmup_steps=2, alpha=0.5, eval_every=4,
                         log_every=2, out_dir=str(out), **kw)
    trainer = Trainer(cnn(), build_task("classification"), digits[0], digits[1], config=config,
                      teacher=cnn(seed=9), callbacks=[cb, *extra])
    trainer.fit()
    return trainer, cb


def test_prune_during_training_physical_trains_and_resumes_exactly(digits: Any, tmp_path: Path) -> None:
    widths = Widths()
    straight, cb = fit(digits, tmp_path / "a", [widths])
    # pruned physically at steps 1, 3 and 5: the model shrinks at each of them, and only then
    w = [8, *widths.widths]
    assert [s for s in range(10) if w[s + 1] != w[s]] == [1, 3, 5] and w[-1] == 4
    assert cb.plan is not None and len(cb.pruner.history) == 3  # type: ignore[union-attr]
    assert shapes(apply_plan(cnn(), cb.plan)) == shapes(straight.model)
    with pytest.raises(KeyboardInterrupt):
        fit(digits, tmp_path / "b", [Crash(6)])
    assert list_checkpoints(tmp_path / "b" / "checkpoints")[-1].name == "step-00000004"  # 2 of 3 steps done
    resumed, cb2 = fit(digits, tmp_path / "b", [], resume=True)
    assert resumed.step == 10
    assert cb2.plan is not None and cb2.plan.keep == cb.plan.keep
    assert_same_tensors(straight.model, resumed.model)
