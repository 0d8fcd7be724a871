"""Feature KD in training: taps on chosen layers, kept channels from a plan, Trainer and run_cpd."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset

import cpd
from cpd.apply.mask import removed_positions, zero_channels
from cpd.config.load import ConfigError, config_from_dict
from cpd.data import build_dataset
from cpd.distill import FeatureTaps, kept_channels
from cpd.groups.comb_result import CombResult
from cpd.pipeline.prune_callback import PruneDuringTraining
from cpd.pipeline.run import run_cpd
from cpd.plan.plan import Plan
from cpd.tasks import build_task
from cpd.train import Callback, TrainConfig, Trainer, list_checkpoints

torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """Two conv-BN stages and a linear head; 1 x 8 x 8 inputs (digits)."""

    def __init__(self, seed: int = 0, in_ch: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1, self.bn1 = nn.Conv2d(in_ch, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.act, self.fc = nn.ReLU(), nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class TinyTokens(nn.Module):
    """Token MLP block on ``(B, N, 6)`` inputs: embed, LayerNorm, fc1 -> GELU -> fc2, residual."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.norm = nn.Linear(6, 16), nn.LayerNorm(16)
        self.fc1, self.fc2, self.head = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        h = h + self.fc2(F.gelu(self.fc1(self.norm(h))))
        return self.head(h.mean(1))


def outputs_of(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, Tensor]:
    """Outputs of the named modules on ``x``, recorded by plain hooks (independent of FeatureTaps)."""
    out: dict[str, Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, a, o, n=n: out.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def kept_by_members(comb: CombResult, plan: Plan, tensor: str) -> Tensor:
    """Kept output positions of ``tensor`` (dim 0) read from the group members, by hand."""
    for g in comb.groups:
        for m in g.members:
            if m.name == tensor and m.dim == 0 and g.id in plan.keep:
                return torch.tensor(sorted(p for c in plan.keep[g.id] for p in m.index[c]))
    raise AssertionError(f"no pruned group owns {tensor} dim 0")


def feature_loss(taps: FeatureTaps, teacher: nn.Module, student: nn.Module, x: Tensor) -> float:
    with taps.capture(), torch.no_grad():
        teacher(x)
        student(x)
        return float(taps.loss())


@pytest.fixture(scope="module")
def pruned_cnn() -> tuple[nn.Module, Any]:
    teacher = TinyCNN(in_ch=3).eval()
    return teacher, cpd.prune(teacher, torch.randn(2, 3, 8, 8), ratio=0.5)


def test_pruned_student_loss_is_mse_at_kept_channels(pruned_cnn: tuple[nn.Module, Any]) -> None:
    teacher, res = pruned_cnn
    student, layers = res.model.eval(), ["conv1", "bn2"]
    kept = kept_channels(res.plan, teacher, layers)
    for name in layers:  # the plan's trees agree with the group members, and with the weights
        assert torch.equal(kept[name], kept_by_members(res.comb, res.plan, f"{name}.weight"))
        assert len(kept[name]) == 4
    assert torch.equal(student.conv1.weight, teacher.conv1.weight[kept["conv1"]])
    x = torch.randn(4, 3, 8, 8)
    t, s = outputs_of(teacher, x, layers), outputs_of(student, x, layers)
    by_hand = (F.mse_loss(s["conv1"], t["conv1"][:, kept["conv1"]]) + F.mse_loss(s["bn2"], t["bn2"][:, kept["bn2"]])) / 2
    taps = FeatureTaps(layers, teacher, student)
    taps.set_kept(kept)
    assert feature_loss(taps, teacher, student, x) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(by_hand) > 0  # bn2 sees conv1's pruned input, so it differs from the teacher
    # conv1 reads the image, which pruning does not touch: exactly the teacher's kept rows
    with pytest.raises(ValueError, match="check `kept`"):  # a pruned student needs its kept channels
        feature_loss(FeatureTaps(["conv1"], teacher, student), teacher, student, x)
    only = FeatureTaps(["conv1"], teacher, student)
    only.set_kept({"conv1": kept["conv1"]})
    assert feature_loss(only, teacher, student, x) == pytest.approx(0.0, abs=1e-12)


def test_masked_student_is_sliced_at_the_kept_channels(pruned_cnn: tuple[nn.Module, Any]) -> None:
    teacher, res = pruned_cnn
    masked = copy.deepcopy(teacher)
    zero_channels(masked, removed_positions(res.comb, res.plan.keep))  # removed channels held at 0
    kept = kept_channels(res.plan, teacher, ["conv1"])["conv1"]
    x = torch.randn(4, 3, 8, 8)
    t, s = outputs_of(teacher, x, ["conv1"])["conv1"], outputs_of(masked, x, ["conv1"])["conv1"]
    assert s.shape == t.shape and float(s.abs().amax((0, 2, 3)).sort().values[:4].sum()) == 0.0
    taps = FeatureTaps(["conv1"], teacher, masked)
    full = feature_loss(taps, teacher, masked, x)
    assert full == pytest.approx(float(F.mse_loss(s, t)), rel=1e-6) and full > 0.01  # the zeros count
    taps.set_kept({"conv1": kept})
    assert feature_loss(taps, teacher, masked, x) == pytest.approx(0.0, abs=1e-12)  # they no longer do


def test_token_features_of_a_linear_layer_use_the_last_dim() -> None:
    teacher = TinyTokens().eval()
    res = cpd.prune(teacher, torch.randn(2, 5, 6), ratio=0.5)
    student = res.model.eval()
    kept = kept_channels(res.plan, teacher, ["fc1", "norm"])
    assert len(kept["fc1"]) == 16 and torch.equal(kept["fc1"], kept_by_members(res.comb, res.plan, "fc1.weight"))
    taps = FeatureTaps(["fc1", "norm"], teacher, student)
    assert taps.dims == {"fc1": -1, "norm": -1}
    taps.set_kept(kept)
    x = torch.randn(3, 5, 6)
    t, s = outputs_of(teacher, x, ["fc1", "norm"]), outputs_of(student, x, ["fc1", "norm"])
    assert s["fc1"].shape == (3, 5, 16)
    by_hand = [F.mse_loss(s[n], t[n][..., kept[n]]) for n in ("fc1", "norm")]
    assert feature_loss(taps, teacher, student, x) == pytest.approx(float(sum(by_hand) / 2), rel=1e-6)


def test_layer_names_are_checked_with_close_matches() -> None:
    teacher = TinyCNN()
    with pytest.raises(ValueError, match=r"'conv_1' is not a module of the teacher.*close matches: conv1"):
        FeatureTaps(["conv_1"], teacher)
    with pytest.raises(ValueError, match=r"'act' is a ReLU.*register_feature_axis"):
        FeatureTaps(["act"], teacher)
    with pytest.raises(ValueError, match="non-empty list"):
        FeatureTaps("conv1", teacher)  # type: ignore[arg-type]
    taps = FeatureTaps(["conv1"], teacher)
    with pytest.raises(ValueError, match=r"\['conv2'\] are not tapped"):
        taps.set_kept({"conv2": None})
    with pytest.raises(RuntimeError, match="inside taps.capture"):
        taps.pairs()
    with taps.capture(), torch.no_grad():  # the student alone was never tapped
        teacher(torch.randn(1, 1, 8, 8))
        with pytest.raises(RuntimeError, match=r"\['conv1'\]"):
            taps.pairs()
    data = build_dataset("digits", split="train")
    task, config = build_task("classification"), TrainConfig(max_steps=1, alpha=0.0, feature_layers=["conv1", "bn3"])
    with pytest.raises(ValueError, match=r"'bn3' is not a module.*close matches: bn2, bn1"):
        Trainer(TinyCNN(), task, data, config=config, teacher=TinyCNN(seed=1))
    with pytest.raises(ValueError, match="feature_layers distil from a teacher"):
        Trainer(TinyCNN(), task, data, config=config)


def test_config_fields_validate_and_round_trip() -> None:
    config = TrainConfig(feature_layers=("conv1", "bn2"), feature_weight=0.25)
    assert config.feature_layers == ["conv1", "bn2"] and TrainConfig().feature_layers == []
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad, match in [({"feature_weight": -1.0}, "feature_weight must be >= 0"),
                       ({"feature_layers": "conv1"}, r"write \['conv1'\]"),
                       ({"feature_layers": ["a", "a"]}, "twice")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)  # type: ignore[arg-type]
    run = config_from_dict({"model": {"source": "x"}, "data": {"name": "digits"},
                            "train": {"feature_layers": ["conv1"], "feature_weight": 2}})
    assert run.train.feature_layers == ["conv1"] and run.train.feature_weight == 2.0
    with pytest.raises(ConfigError, match="train.feature_weight must be >= 0"):
        config_from_dict({"model": {"source": "x"}, "data": {"name": "digits"}}, ["train.feature_weight=-2"])


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    return Subset(build_dataset("digits", split="train"), range(320)), Subset(build_dataset("digits", split="val"), range(64))


def test_trainer_logs_and_reduces_the_feature_term(digits: tuple[Any, Any], tmp_path: Path) -> None:
    teacher = TinyCNN(seed=0).eval()
    res = cpd.prune(teacher, torch.zeros(1, 1, 8, 8), ratio=0.5)
    student = res.model
    with torch.no_grad():  # move the student away from the teacher so there is something to learn
        for p in student.parameters():
            p.add_(0.3 * torch.randn_like(p))
    layers = ["conv1", "bn2"]
    probe = FeatureTaps(layers, teacher, student)
    probe.set_kept(kept_channels(res.plan, teacher, layers))
    x = torch.stack([digits[1][i][0] for i in range(64)])
    student.eval()
    before = feature_loss(probe, teacher, student, x)
    config = TrainConfig(max_steps=30, batch_size=32, lr=1e-2, alpha=0.0, feature_layers=layers,
                         feature_weight=5.0, log_every=5, out_dir=str(tmp_path))
    trainer = Trainer(student, build_task("classification"), digits[0], config=config, teacher=teacher)
    trainer.feature_taps.set_kept(kept_channels(res.plan, teacher, layers))  # type: ignore[union-attr]
    trainer.fit()
    rows = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all({"task", "feature", "total"} <= set(r) for r in rows)
    assert all(r["total"] == pytest.approx(r["task"] + 5.0 * r["feature"], rel=1e-5) for r in rows)
    assert rows[0]["feature"] > 0 and rows[-1]["feature"] < rows[0]["feature"]
    student.eval()
    assert feature_loss(probe, teacher, student, x) < 0.5 * before
    assert json.loads((tmp_path / "config.json").read_text())["feature_layers"] == layers


def prune_fit(digits: tuple[Any, Any], out: Path, extra: list[Callback], mode: str, **kw: Any) -> tuple[Trainer, PruneDuringTraining]:
    cb = PruneDuringTraining(TinyCNN(), torch.zeros(1, 1, 8, 8), steps=2, interval=2, mode=mode,
                             ratio=0.5, importance="magnitude")
    config = TrainConfig(max_steps=8, batch_size=32, lr=3e-3, alpha=0.5, feature_layers=["conv1", "bn2"],
                         eval_every=4, log_every=1, out_dir=str(out), **kw)
    trainer = Trainer(TinyCNN(), build_task("classification"), digits[0], digits[1], config=config,
                      teacher=TinyCNN(), callbacks=[cb, *extra])
    trainer.fit()
    return trainer, cb


class Kept(Callback):
    """Records the taps' kept channels of conv1 and the student's width after each step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int | None, int]] = []

    def on_step_end(self, trainer, step):  # type: ignore[no-untyped-def]
        kept = trainer.feature_taps.kept["conv1"]
        self.seen.append((None if kept is None else len(kept), trainer.model.conv1.out_channels))


class Crash(Callback):
    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        if step == 5:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("mode", ["mask", "physical"])
def test_prune_during_training_updates_the_taps(digits: tuple[Any, Any], tmp_path: Path, mode: str) -> None:
    kept = Kept()
    trainer, cb = prune_fit(digits, tmp_path, [kept], mode)
    # Pruning steps at 1 (to 6 of 8 channels) and 3 (to 4, then removal); the taps know the kept
    # channels from the step on; a masked student stays 8 wide until the removal.
    width = [8, 8, 8, 4] if mode == "mask" else [8, 6, 6, 4]
    assert kept.seen == [(None, 8), (6, width[1]), (6, width[2]), *[(4, 4)] * 5]
    assert cb.plan is not None
    final = kept_channels(cb.plan, TinyCNN(), ["conv1", "bn2"])
    assert all(torch.equal(trainer.feature_taps.kept[n], final[n]) for n in final)  # type: ignore[union-attr,arg-type]
    rows = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["feature"] == r["feature"] and r["feature"] >= 0 for r in rows)


def test_resume_with_feature_kd_equals_uninterrupted(digits: tuple[Any, Any], tmp_path: Path) -> None:
    straight, _ = prune_fit(digits, tmp_path / "a", [], "mask")
    with pytest.raises(KeyboardInterrupt):
        prune_fit(digits, tmp_path / "b", [Crash()], "mask")
    assert list_checkpoints(tmp_path / "b" / "checkpoints")[-1].name == "step-00000004"  # after the removal
    resumed, _ = prune_fit(digits, tmp_path / "b", [], "mask", resume=True)
    assert resumed.feature_taps.kept["conv1"] is not None  # type: ignore[union-attr]
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_run_cpd_with_feature_layers(digits: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = digits
    teacher = TinyCNN().eval()
    config = TrainConfig(max_steps=8, batch_size=32, lr=3e-3, alpha=0.5, feature_layers=["conv2"],
                         feature_weight=2.0, log_every=1, out_dir=str(tmp_path), progress=False)
    res = run_cpd(teacher, build_task("classification"), train, val, torch.zeros(1, 1, 8, 8), config=config,
                  steps=2, interval=2, importance="magnitude", ratio=0.5, latency_batch_sizes=(1,))
    assert res.model.conv2.out_channels == 4 and len(res.history) == 2
    rows = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all({"kd", "task", "feature"} <= set(r) for r in rows)
    assert max(r["feature"] for r in rows[4:]) > 0  # after pruning, the student differs from the teacher
    with pytest.raises(ValueError, match="close matches: conv2"):
        run_cpd(teacher, build_task("classification"), train, val, torch.zeros(1, 1, 8, 8),
                config=TrainConfig(max_steps=8, feature_layers=["conv22"]), steps=2, interval=2, ratio=0.5)


def test_cpd_run_config_pretrains_without_and_distils_with_features(tmp_path: Path) -> None:
    from rich.console import Console

    from cpd.config.load import load_config
    from cpd.config.runner import run_config

    overrides = ["pretrain.steps=4", "prune.steps=2", "prune.interval=2", "prune.score_batches=1",
                 "prune.importance=magnitude", "train.max_steps=6", "train.log_every=1", "export.onnx=false",
                 "export.compare=false", "report.latency_batch_sizes=[1]", f"report.out={tmp_path / 'out'}",
                 'train.feature_layers=["4", "6.body.4"]']
    config = load_config(Path(__file__).parents[1] / "examples" / "digits-demo.yaml", overrides)
    with open(tmp_path / "console.txt", "w") as log:  # the pretrain used to inherit feature_layers, no teacher
        run_config(config, console=Console(file=log))
    rows = [json.loads(line)["loss"] for line in (tmp_path / "out" / "run" / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("feature" in r and "kd" in r for r in rows)
