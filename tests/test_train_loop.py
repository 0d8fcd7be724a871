"""The training loop: learning, distillation, clipping, logging, best-checkpoint selection."""

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Subset

from cpd.data import build_dataset
from cpd.tasks import ClassificationTask, build_task
from cpd.tasks.classification import TopKAccuracy
from cpd.train import Callback, TrainConfig, Trainer


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    return build_dataset("digits", split="train"), build_dataset("digits", split="val")


def mean_loss(model: nn.Module, data: Any) -> float:
    x = torch.stack([data[i][0] for i in range(256)])
    y = torch.tensor([data[i][1] for i in range(256)])
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def test_plain_fine_tuning_learns_without_a_teacher(digits: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = digits
    model = mlp()
    before = mean_loss(model, val)
    config = TrainConfig(max_steps=60, batch_size=32, lr=5e-3, alpha=0.0, warmup_steps=5, log_every=10, out_dir=str(tmp_path))
    summary = Trainer(model, build_task("classification"), train, val, config=config).fit()
    after = mean_loss(model, val)
    assert after < 0.5 * before, (before, after)
    assert summary["step"] == 60 and summary["metrics"]["top1"] > 80.0
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"]["total"] < lines[0]["loss"]["total"]
    assert set(lines[0]["loss"]) == {"task", "total"}  # no kd term without a teacher


def test_distillation_pulls_student_to_frozen_teacher(digits: tuple[Any, Any]) -> None:
    train, val = digits
    teacher = mlp(seed=1)
    Trainer(teacher, build_task("classification"), train, config=TrainConfig(max_steps=40, lr=5e-3, alpha=0.0)).fit()
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.train()  # the trainer must put it back in eval mode itself
    student = mlp(seed=2)
    x = torch.stack([val[i][0] for i in range(128)])

    def kd_gap() -> float:
        with torch.no_grad():
            return float(nn.functional.kl_div(student(x).log_softmax(1), teacher(x).log_softmax(1), log_target=True, reduction="batchmean"))

    before = kd_gap()
    trainer = Trainer(student, build_task("classification"), train, config=TrainConfig(max_steps=40, lr=5e-3, alpha=1.0, temperature=2.0), teacher=teacher)
    trainer.fit()
    assert not trainer.teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    assert kd_gap() < 0.5 * before


def test_alpha_needs_a_teacher(digits: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError, match="teacher"):
        Trainer(mlp(), build_task("classification"), digits[0], config=TrainConfig(alpha=0.5))


@pytest.mark.parametrize("clip", [0.05, None])
def test_grad_clip_bounds_the_update(digits: tuple[Any, Any], clip: float | None) -> None:
    # Plain SGD with lr 1: the weight change is exactly the (clipped) gradient.
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainConfig(max_steps=1, optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0, schedule="constant", alpha=0.0, grad_clip=clip)

    norms: list[float] = []

    class Probe(Callback):  # records the unclipped norm the step saw
        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))))

    Trainer(model, build_task("classification"), digits[0], config=config, callbacks=[Probe()]).fit()
    delta = torch.linalg.vector_norm(torch.stack([(p.detach() - b).norm() for p, b in zip(model.parameters(), before)]))
    assert norms[0] > 0.05  # so clipping is active in the clipped case
    if clip is None:
        assert float(delta) == pytest.approx(norms[0], rel=1e-4)
    else:
        assert float(delta) <= clip * (1 + 1e-4)
        assert float(delta) == pytest.approx(clip, rel=1e-3)


def test_json_lines_log_is_strict_json_with_eval_metrics(digits: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = digits
    config = TrainConfig(max_steps=12, batch_size=16, lr=1e-3, alpha=0.5, log_every=3, eval_every=6, out_dir=str(tmp_path))
    Trainer(mlp(), build_task("classification"), Subset(train, range(320)), Subset(val, range(64)), config=config, teacher=mlp(seed=3)).fit()

    def no_nan(token: str) -> float:
        raise AssertionError(f"non-standard JSON constant {token}")

    records = [json.loads(line, parse_constant=no_nan) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    for r in records:
        assert {"step", "epoch", "lr", "loss", "grad_norm", "seconds"} <= set(r)
        assert {"kd", "task", "total"} == set(r["loss"]) and all(math.isfinite(v) for v in r["loss"].values())
        assert r["lr"] > 0 and r["seconds"] >= 0
    assert [("metrics" in r) for r in records] == [False, True, False, True]
    assert set(records[1]["metrics"]) == {"top1", "top5"}
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["max_steps"] == 12 and saved["alpha"] == 0.5


class ScriptedAccuracy(TopKAccuracy):
    """A metric whose successive evaluations return scripted top-1 values."""

    values = iter([10.0, 30.0, 20.0])

    def compute(self) -> dict[str, float | list[float]]:
        return {"top1": next(self.values), "top5": 0.0}


class ScriptedTask(ClassificationTask):
    def metric(self) -> TopKAccuracy:
        return ScriptedAccuracy(self.topk)


def test_best_checkpoint_follows_the_primary_metric(digits: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = digits
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot(Callback):
        def on_eval(self, trainer, step, metrics):  # type: ignore[no-untyped-def]
            snapshots[step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    ScriptedAccuracy.values = iter([10.0, 30.0, 20.0])
    config = TrainConfig(max_steps=6, batch_size=16, lr=1e-2, alpha=0.0, eval_every=2, keep_last=1, out_dir=str(tmp_path))
    trainer = Trainer(mlp(), ScriptedTask(), train, Subset(val, range(32)), config=config, callbacks=[Snapshot()])
    summary = trainer.fit()
    assert summary["best"] == {"metric": "top1", "value": 30.0, "step": 4}
    ckpts = tmp_path / "checkpoints"
    best = json.loads((ckpts / "best.json").read_text())
    assert best == {"path": "step-00000004", "step": 4, "metric": "top1", "value": 30.0}
    # keep_last=1 keeps the newest (6) plus the best (4); step 2 was rotated away.
    assert sorted(p.name for p in ckpts.iterdir() if p.is_dir()) == ["step-00000004", "step-00000006"]
    weights = load_file(ckpts / "step-00000004" / "model.safetensors")
    assert all(torch.equal(weights[k], snapshots[4][k]) for k in snapshots[4])
    assert not all(torch.equal(weights[k], snapshots[6][k]) for k in snapshots[6])


class KwargSegmenter(nn.Module):
    """Hugging Face style: ``forward(pixel_values=...)`` returning ``{"logits": (B, C, h, w)}`` at 1/2 size."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(8, 3, 1))

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.body(pixel_values)}


class Stripes(torch.utils.data.Dataset):
    """``({"pixel_values": (1, 8, 8)}, labels (8, 8))``: class = brightness band, border ignored."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, 8, 8, generator=g)
        self.y = (self.x[:, 0] * 3).long().clamp(max=2)
        self.y[:, 0, :] = 255

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"pixel_values": self.x[i]}, self.y[i]


def test_segmentation_with_kwarg_inputs_and_dict_outputs(tmp_path: Path) -> None:
    task = build_task("segmentation", num_classes=3, ignore_index=255)
    config = TrainConfig(max_steps=30, batch_size=8, lr=2e-2, alpha=0.5, eval_every=15, out_dir=str(tmp_path))
    trainer = Trainer(KwargSegmenter(0), task, Stripes(64), Stripes(16), config=config, teacher=KwargSegmenter(1))
    summary = trainer.fit()
    assert set(summary["metrics"]) == {"miou", "pixel_acc", "per_class_iou"}
    assert summary["best"]["metric"] == "miou" and summary["best"]["value"] > 0
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["loss"]["task"] < records[0]["loss"]["task"]
