"""Callbacks: hook order, model replacement mid-training (optimizer, schedule, state)."""

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from cpd.data import build_dataset
from cpd.scores import get_criterion
from cpd.tasks import build_task
from cpd.train import Callback, TrainConfig, Trainer, lr_at


def mlp(hidden: int = 32, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def keep_hidden(model: nn.Sequential, keep: torch.Tensor) -> nn.Sequential:
    """A physically smaller copy keeping hidden units ``keep`` (what apply_plan does, by hand)."""
    first, last = model[1], model[3]
    new = nn.Sequential(nn.Flatten(), nn.Linear(64, len(keep)), nn.ReLU(), nn.Linear(len(keep), 10))
    with torch.no_grad():
        new[1].weight.copy_(first.weight[keep])
        new[1].bias.copy_(first.bias[keep])
        new[3].weight.copy_(last.weight[:, keep])
        new[3].bias.copy_(last.bias)
    return new


@pytest.fixture(scope="module")
def train() -> Any:
    return Subset(build_dataset("digits", split="train"), range(320))


class Shrink(Callback):
    """At step ``at``, scores hidden units with the gradients of the step, keeps the top half."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen: dict[str, Any] = {}

    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        model = trainer.model
        if step != self.at:
            return None
        labels, teacher_logits = targets
        assert labels.shape == (16,)
        assert teacher_logits is None if trainer.config.alpha == 0 else teacher_logits.shape == (16, 10)
        loss = loss_fn(model(inputs), targets)  # the training objective, re-evaluated
        assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
        taylor = (model[1].weight * model[1].weight.grad).sum(1).abs()  # (hidden,)
        keep = taylor.argsort(descending=True)[:16].sort().values
        self.seen.update(old=model, old_opt=trainer.optimizer, keep=keep, last_bias=model[3].bias.detach().clone())
        return keep_hidden(model, keep)


def test_replacement_rebuilds_optimizer_and_keeps_schedule_position(train: Any) -> None:
    shrink = Shrink(at=5)
    losses: list[float] = []

    class Watch(Callback):
        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            if step > shrink.at:
                losses.append(float(loss_fn(trainer.model(inputs), targets).detach()))

    config = TrainConfig(max_steps=12, batch_size=16, lr=1e-2, warmup_steps=2, alpha=0.5, log_every=1)
    trainer = Trainer(mlp(), build_task("classification"), train, config=config, teacher=mlp(seed=1), callbacks=[shrink, Watch()])
    trainer.fit()
    model, opt = trainer.model, trainer.optimizer
    assert model is not shrink.seen["old"] and model[1].out_features == 16
    assert opt is not shrink.seen["old_opt"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.parameters()}
    assert not in_opt & {id(p) for p in shrink.seen["old"].parameters()}
    # The lr continues on the original curve: step 12 is the next one.
    expected = lr_at(12, base_lr=1e-2, total_steps=12, warmup_steps=2)
    assert all(g["lr"] == pytest.approx(expected) for g in opt.param_groups)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert not torch.equal(model[3].bias.detach(), shrink.seen["last_bias"])  # the new model trained


def test_state_of_unchanged_parameters_is_carried_over(train: Any) -> None:
    shrink = Shrink(at=3)
    moved: dict[str, Any] = {}

    class Grab(Callback):
        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            if step == shrink.at:  # runs after Shrink: sees the new model and optimizer, before any step
                moved.update({n: dict(trainer.optimizer.state.get(p, {})) for n, p in trainer.model.named_parameters()})

    before: dict[str, Any] = {}

    class Before(Callback):
        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            if step == shrink.at:
                before.update({n: {k: v.clone() for k, v in trainer.optimizer.state[p].items()} for n, p in trainer.model.named_parameters()})

    config = TrainConfig(max_steps=4, batch_size=16, lr=1e-2, alpha=0.0)
    Trainer(mlp(), build_task("classification"), train, config=config, callbacks=[Before(), shrink, Grab()]).fit()
    assert set(moved["3.bias"]) == {"step", "exp_avg", "exp_avg_sq"}  # (10,) unchanged: moments kept
    assert torch.equal(moved["3.bias"]["exp_avg"], before["3.bias"]["exp_avg"])
    assert moved["1.weight"] == {} and moved["3.weight"] == {}  # sliced: fresh state


def test_hooks_run_in_order_with_eval_metrics(train: Any) -> None:
    calls: list[tuple[Any, ...]] = []

    class Record(Callback):
        def on_train_start(self, trainer):  # type: ignore[no-untyped-def]
            calls.append(("start", trainer.step))

        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            assert all(p.grad is not None for p in trainer.model.parameters())  # after backward
            calls.append(("batch", step))

        def on_eval(self, trainer, step, metrics):  # type: ignore[no-untyped-def]
            calls.append(("eval", step, sorted(metrics)))

        def on_train_end(self, trainer):  # type: ignore[no-untyped-def]
            calls.append(("end", trainer.step))

    config = TrainConfig(max_steps=4, batch_size=16, alpha=0.0, eval_every=2)
    Trainer(mlp(), build_task("classification"), train, Subset(train.dataset, range(32)), config=config, callbacks=[Record()]).fit()
    assert calls == [
        ("start", 0), ("batch", 0), ("batch", 1), ("eval", 2, ["top1", "top5"]),
        ("batch", 2), ("batch", 3), ("eval", 4, ["top1", "top5"]), ("end", 4),
    ]


def test_should_stop_ends_early_with_a_checkpoint(train: Any, tmp_path: Any) -> None:
    class StopAt(Callback):
        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            trainer.should_stop = step == 2

    config = TrainConfig(max_steps=10, batch_size=16, alpha=0.0, out_dir=str(tmp_path))
    summary = Trainer(mlp(), build_task("classification"), train, config=config, callbacks=[StopAt()]).fit()
    assert summary["step"] == 3
    assert (tmp_path / "checkpoints" / "step-00000003" / "manifest.json").is_file()


def test_targets_and_loss_fn_feed_a_pruning_criterion(train: Any, recwarn: pytest.WarningsRecorder) -> None:
    """The on_batch arguments plug straight into cpd.scores, per sample (vmap) included."""
    import cpd

    got: dict[int, torch.Tensor] = {}

    class Score(Callback):
        def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
            if step == 1:
                total, _ = trainer.loss_and_parts(trainer.model(inputs), targets)
                assert float(loss_fn(trainer.model(inputs), targets).detach()) == pytest.approx(float(total.detach()))
                groups = cpd.comb(trainer.model, inputs[:2]).prunable()
                crit = get_criterion("hessian", per_sample=True).prepare(trainer.model, groups)
                crit.accumulate(trainer.model, inputs, targets, loss_fn)
                got.update(crit.scores())

    config = TrainConfig(max_steps=2, batch_size=16, alpha=0.5)
    Trainer(mlp(), build_task("classification"), train, config=config, teacher=mlp(seed=4), callbacks=[Score()]).fit()
    assert len(got) == 1 and next(iter(got.values())).shape == (32,)
    assert all(torch.isfinite(s).all() and (s > 0).any() for s in got.values())
    assert not [w for w in recwarn if "falling back" in str(w.message)]  # loss_fn is vmap-friendly
