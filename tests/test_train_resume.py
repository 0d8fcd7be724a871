"""Checkpoints: exact resume (also of a pruned model), corruption errors, crash-safe saves."""

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

import cpd
from cpd.apply.apply import apply_plan
from cpd.data import build_dataset
from cpd.plan.plan import Plan
from cpd.tasks import build_task
from cpd.train import (
    Callback,
    CheckpointError,
    TrainConfig,
    Trainer,
    list_checkpoints,
    read_checkpoint,
)
from cpd.train import checkpoint as checkpoint_module


def cnn(seed: int = 0) -> nn.Module:
    """BN (running stats) and dropout (RNG) make exact resume non-trivial."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(), nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    # 160 samples / batch 32 = 5 steps per epoch: the 12-step runs cross two epochs.
    return Subset(build_dataset("digits", split="train"), range(160)), Subset(build_dataset("digits", split="val"), range(64))


class Crash(Callback):
    """Simulates a kill: raises in the middle of step ``at`` (work since the last checkpoint is lost)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        if step == self.at:
            raise KeyboardInterrupt("simulated kill")


class PruneAt(Callback):
    """Prunes half the channels at one step and rebuilds the pruned architecture on resume."""

    def __init__(self, at: int) -> None:
        self.at, self.plans, self.example = at, [], torch.randn(2, 1, 8, 8)

    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        if step != self.at:
            return None
        trainer.model.eval()  # tracing in train mode would move the BN statistics
        result = cpd.prune(trainer.model, self.example, ratio=0.5)
        trainer.model.train()
        self.plans.append(result.plan.to_json())
        return result.model

    def checkpoint_extra(self, trainer):  # type: ignore[no-untyped-def]
        return {"plans": self.plans}

    def on_resume(self, trainer, extra):  # type: ignore[no-untyped-def]
        self.plans = list(extra["plans"])
        model = cnn()
        for plan in self.plans:
            model = apply_plan(model, Plan.from_json(plan))
        return model


def config(out: Path, **kw: Any) -> TrainConfig:
    base = dict(max_steps=12, batch_size=32, lr=3e-3, warmup_steps=3, grad_clip=1.0, alpha=0.5, eval_every=4, log_every=2, out_dir=str(out))
    return TrainConfig(**{**base, **kw})


def run(data: tuple[Any, Any], out: Path, callbacks: list[Callback], **kw: Any) -> Trainer:
    trainer = Trainer(cnn(), build_task("classification"), data[0], data[1], config=config(out, **kw), teacher=cnn(seed=9), callbacks=callbacks)
    trainer.fit()
    return trainer


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "crash_at, save_every, resumed_from, extra_view",
    # mid-epoch (4 = epoch 0, batch 4) and at an epoch boundary (5); the CutMix KD view
    # draws from the RNG, which must be restored too
    [(6, 0, 4, "none"), (7, 5, 5, "none"), (6, 0, 4, "cutmix")],
)
def test_resume_after_kill_equals_uninterrupted(data: Any, tmp_path: Path, crash_at: int, save_every: int,
                                                resumed_from: int, extra_view: str) -> None:
    straight = run(data, tmp_path / "a", [], save_every=save_every, extra_view=extra_view)
    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path / "b", [Crash(crash_at)], save_every=save_every, extra_view=extra_view)
    assert list_checkpoints(tmp_path / "b" / "checkpoints")[-1].name == f"step-{resumed_from:08d}"
    resumed = run(data, tmp_path / "b", [], save_every=save_every, resume=True, extra_view=extra_view)
    assert resumed.step == 12
    assert_same_weights(straight.model, resumed.model)
    assert straight.best == resumed.best
    # The log of the resumed run reads like one run: no duplicated steps from the killed one.
    log_a = [line for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [line for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    steps = lambda lines: [int(line.split('"step": ')[1].split(",")[0]) for line in lines]  # noqa: E731
    assert steps(log_a) == steps(log_b)


def test_resume_rebuilds_a_pruned_model_before_loading(data: Any, tmp_path: Path) -> None:
    straight = run(data, tmp_path / "a", [PruneAt(2)])
    assert straight.model[0].out_channels == 4  # pruned at step 2
    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path / "b", [PruneAt(2), Crash(10)])
    ckpt = read_checkpoint(list_checkpoints(tmp_path / "b" / "checkpoints")[-1])
    assert ckpt.step == 8 and len(ckpt.extra["PruneAt"]["plans"]) == 1
    resumed = run(data, tmp_path / "b", [PruneAt(2)], resume=True)
    assert resumed.model[0].out_channels == 4
    assert_same_weights(straight.model, resumed.model)


def test_resume_without_rebuild_fails_clearly(data: Any, tmp_path: Path) -> None:
    run(data, tmp_path, [PruneAt(2)], max_steps=4)
    with pytest.raises(CheckpointError, match="on_resume must rebuild"):
        run(data, tmp_path, [], max_steps=8, resume=True)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("damage", ["truncate", "flip"])
@pytest.mark.parametrize("victim", ["model.safetensors", "trainer.pt"])
def test_corrupt_checkpoint_gives_one_line_error_and_keeps_previous(data: Any, tmp_path: Path, damage: str, victim: str) -> None:
    run(data, tmp_path, [], max_steps=8)
    ckpts = tmp_path / "checkpoints"
    good, bad = ckpts / "step-00000004", ckpts / "step-00000008"
    before = digest(good)
    target = bad / victim
    raw = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        raw[len(raw) // 2] ^= 0xFF
        target.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        run(data, tmp_path, [], max_steps=12, resume=True)
    message = str(info.value)
    assert "\n" not in message
    assert str(target) in message and "step-00000004" in message and "delete" in message
    assert digest(good) == before
    assert read_checkpoint(good).step == 4


def test_missing_manifest_is_reported(tmp_path: Path, data: Any) -> None:
    run(data, tmp_path, [], max_steps=4)
    folder = tmp_path / "checkpoints" / "step-00000004"
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json is missing or invalid"):
        read_checkpoint(folder)


def test_crash_while_saving_leaves_last_good_checkpoint(data: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(data, tmp_path, [], max_steps=4)
    ckpts = tmp_path / "checkpoints"
    before = digest(ckpts / "step-00000004")
    real_save = torch.save

    def half_write(obj: Any, path: Any, *a: Any, **kw: Any) -> None:
        real_save(obj, path, *a, **kw)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"), pytest.warns(UserWarning, match="new length"):
        run(data, tmp_path, [], max_steps=8, resume=True)
    monkeypatch.undo()
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.json", "step-00000004"]  # no half-written folder
    assert digest(ckpts / "step-00000004") == before
    with pytest.warns(UserWarning, match="new length"):
        resumed = run(data, tmp_path, [], max_steps=8, resume=True)
    assert resumed.step == 8
