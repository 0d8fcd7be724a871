"""The fine-tuning loop shared by Prune and Distill: a student learns from a frozen teacher.

One :class:`Trainer` runs on one process or under ``torchrun`` (DDP, one process per
device); see :mod:`cpd.train.callbacks` for how pruning plugs in, and
:mod:`cpd.train.checkpoint` for the checkpoint format. Exact resume: a run resumed
from a checkpoint ends with the same weights as an uninterrupted run with the same
config (same world size; data loading with ``num_workers=0`` or deterministic per
sample).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from cpd.inputs import to_device
from cpd.report.atomic import atomic_path
from cpd.tasks.task import Task
from cpd.train.amp import autocast, make_scaler
from cpd.train.callbacks import Callback
from cpd.train.checkpoint import CheckpointManager
from cpd.train.config import TrainConfig
from cpd.train.distributed import DistInfo, init_distributed, unwrap, wrap_ddp
from cpd.train.evaluate import evaluate
from cpd.train.loaders import eval_loader, train_loader
from cpd.train.log import JsonLinesLog, progress_bar
from cpd.train.objective import Objective
from cpd.train.optim import (
    build_optimizer,
    clip_gradients,
    named_trainable,
    transfer_state,
)
from cpd.train.rng import seed_everything
from cpd.train.schedule import WarmupSchedule
from cpd.train.state import resume_training_state, save_training_state

__all__ = ["Trainer", "BatchLoss"]

#: ``loss_fn(student_outputs, (labels, teacher_logits_or_None)) -> scalar``.
BatchLoss = Callable[[Any, tuple[Any, "Tensor | None"]], Tensor]


class Trainer:
    """Fine-tune ``model`` on ``train_data``, distilling from ``teacher``.

    Loss (:class:`~cpd.train.objective.Objective`): ``task.distill_loss(alpha, temperature)``
    on the student's and the teacher's outputs (the plain task loss with ``alpha == 0``),
    plus feature KD on ``config.feature_layers`` when set. The teacher is moved to the
    device, frozen and kept in eval mode; its outputs are computed under ``torch.no_grad``.

    Args:
        model: the student (any ``nn.Module`` whose forward takes the batch's inputs).
        task: from :func:`cpd.tasks.build_task`.
        train_data: a map-style dataset of ``(inputs, target)``; inputs a tensor
            (``(C, H, W)`` per sample), a tuple or a dict.
        val_data: evaluated every ``config.eval_every`` steps and at the end; selects the
            best checkpoint by ``task.primary_metric`` (higher is better).
        config: the hyper-parameters.
        teacher: the frozen teacher (needed when ``config.alpha > 0`` or ``config.feature_layers``).
        callbacks: hooks, called in order (see :class:`~cpd.train.Callback`).
        collate_fn: passed to the DataLoaders.
        device: default ``cuda:LOCAL_RANK`` if CUDA is available, else the CPU.

    Attributes:
        step: optimizer steps completed (the schedule position).
        epoch, batch_in_epoch: the data position (the resume point).
        best: ``{"metric": name, "value": float | None, "step": int | None}``.
        feature_taps: the :class:`~cpd.distill.FeatureTaps` of ``config.feature_layers``
            (None without); a pruning callback tells them the kept channels.
        should_stop: set it to True (e.g. in a callback) to stop after the current step,
            with a final evaluation and checkpoint.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_data: Dataset[Any],
        val_data: Dataset[Any] | None = None,
        *,
        config: TrainConfig,
        teacher: nn.Module | None = None,
        callbacks: Sequence[Callback] = (),
        collate_fn: Callable[[list[Any]], Any] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.objective = Objective(task, config, teacher)  # raises if a needed teacher is missing
        self.config, self.task, self.callbacks = config, task, list(callbacks)
        self.info: DistInfo = init_distributed(device)
        self.device = self.info.device
        seed_everything(config.seed + self.info.rank)  # ranks differ in dropout / augmentation draws
        self.teacher = self.objective.teacher.to(self.device) if self.objective.teacher is not None else None
        self.feature_taps = self.objective.taps  # kept channels are set by a pruning callback
        self.loader, self.sampler = train_loader(train_data, config, self.info, collate_fn)
        self.val_loader = eval_loader(val_data, config, self.info, collate_fn) if val_data is not None else None
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training set ({len(self.sampler.dataset)} samples over {self.info.world_size} ranks) "  # type: ignore[arg-type]
                f"is smaller than one batch of {config.batch_size}"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: dict[str, Any] = {"metric": task.primary_metric, "value": None, "step": None}
        self.should_stop = False
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        self.checkpoints = CheckpointManager(self.out_dir / "checkpoints", config.keep_last) if self.out_dir else None
        self.scaler = make_scaler(self.device, config.amp)
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: WarmupSchedule | None = None
        self._install(model)

    # ----------------------------------------------------------------- model swap
    @property
    def model(self) -> nn.Module:
        """The student, unwrapped (``self.ddp_model`` is what the training forward uses)."""
        return self._model

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    def _install(self, model: nn.Module) -> None:
        """Make ``model`` the student: device, optimizer (state carried), schedule, DDP."""
        model = unwrap(model).to(self.device).train()
        old_opt, old_named = self.optimizer, named_trainable(self._model) if self.optimizer else []
        self._model = model
        self.optimizer = build_optimizer(model, self.config)
        if old_opt is not None:
            transfer_state(old_opt, old_named, self.optimizer, named_trainable(model))
        c = self.config
        self.schedule = (
            self.schedule.rebind(self.optimizer)
            if self.schedule is not None
            else WarmupSchedule(self.optimizer, base_lr=c.lr, total_steps=self.total_steps, warmup_steps=c.warmup_steps,
                                schedule=c.schedule, min_lr=c.min_lr, power=c.poly_power, step=self.step)
        )
        self.objective.attach(model)  # feature taps follow the student
        self.ddp_model = wrap_ddp(model, self.info)

    # ----------------------------------------------------------------- the loss
    def loss_and_parts(self, outputs: Any, targets: tuple[Any, Tensor | None]) -> tuple[Tensor, dict[str, float]]:
        """The training loss of ``outputs`` against ``(labels, teacher_logits)``, and its parts
        (see :class:`~cpd.train.objective.Objective`; feature KD needs the step's capture)."""
        return self.objective.loss_and_parts(outputs, targets)

    def loss_fn(self, outputs: Any, targets: tuple[Any, Tensor | None]) -> Tensor:
        """:data:`BatchLoss`: what pruning criteria differentiate (KD + task, no feature term)."""
        return self.objective.loss_fn(outputs, targets)

    # ----------------------------------------------------------------- one step
    def train_step(self, inputs: Any, labels: Any) -> dict[str, float]:
        """Forward, backward, callbacks, clip, optimizer step; returns the loss parts and grad norm."""
        assert self.optimizer is not None and self.schedule is not None
        inputs, labels = to_device(inputs, self.device), to_device(labels, self.device)
        with autocast(self.device, self.config.amp), self.objective.capturing():  # feature taps record here
            loss, parts, teacher_logits = self.objective.step(self.ddp_model, inputs, labels)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # callbacks and clipping see true gradients
        replaced = False
        for cb in self.callbacks:
            new = cb.on_batch(self, self.step, inputs, (labels, teacher_logits), self.loss_fn)
            if new is not None:
                self._install(new)  # later callbacks already see the new model
                replaced = True
        if replaced:
            if self.scaler.is_enabled():
                self.scaler.update()  # consumes the inf check recorded by unscale_
            parts["grad_norm"] = float("nan")
        else:
            norm = clip_gradients(self.model.parameters(), self.config.grad_clip)
            parts["grad_norm"] = float(norm)
            # Under DDP the norm is of all-reduced gradients, so every rank agrees on this.
            if not self.scaler.is_enabled() and not torch.isfinite(norm):
                raise FloatingPointError(
                    f"non-finite gradient norm at step {self.step} (loss {parts['total']}); lower lr, set grad_clip, or use amp='bf16'"
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        for cb in self.callbacks:
            cb.on_step_end(self, self.step)  # e.g. keep masked channels at zero
        self.step += 1
        self.schedule.step = self.step
        self.schedule.apply()
        return parts

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, Any]:
        """Train to ``total_steps`` (resuming first when ``config.resume``); return a summary.

        Returns:
            ``{"step", "epoch", "metrics": last evaluation or {}, "best": self.best,
            "seconds"}``.
        """
        c = self.config
        resumed = self._resume() if c.resume else None
        log_path = self.out_dir / "log.jsonl" if self.out_dir is not None and self.is_main else None
        self.log = JsonLinesLog(log_path, resume_step=resumed)
        if self.out_dir is not None and self.is_main:
            with atomic_path(self.out_dir / "config.json") as tmp:
                tmp.write_text(json.dumps(c.to_dict(), indent=1))
        for cb in self.callbacks:
            cb.on_train_start(self)
        start, window = time.perf_counter(), []
        metrics: dict[str, Any] = {}
        evaluated_at = saved_at = resumed if resumed is not None else -1
        bar = progress_bar(self.total_steps, self.step, c.progress and self.is_main)
        try:
            while self.step < self.total_steps and not self.should_stop:
                self.sampler.set_position(self.epoch, self.batch_in_epoch * c.batch_size)
                assert self.loader.generator is not None
                # Workers' seeds: a function of (seed, epoch, rank) only, so a resumed epoch gets the same.
                self.loader.generator.manual_seed((c.seed * 100_003 + self.epoch) * 1_009 + self.info.rank)
                for inputs, labels in self.loader:
                    window.append(self.train_step(inputs, labels))
                    self.batch_in_epoch += 1
                    if self.batch_in_epoch == self.steps_per_epoch:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    bar.update(1)
                    done = self.step >= self.total_steps or self.should_stop
                    evaluate_now = done or (c.eval_every > 0 and self.step % c.eval_every == 0)
                    if evaluate_now and self.val_loader is not None:
                        metrics, evaluated_at = self._evaluate(), self.step
                    if self.step % c.log_every == 0 or evaluated_at == self.step:
                        self._log(window, metrics if evaluated_at == self.step else None, time.perf_counter() - start, bar)
                        window = []
                    if evaluate_now or (c.save_every > 0 and self.step % c.save_every == 0):
                        self.save()
                        saved_at = self.step
                    if done:
                        break
            if saved_at != self.step:  # stopped before any step ran (e.g. resumed a finished run)
                self.save()
        finally:
            bar.close()
        for cb in self.callbacks:
            cb.on_train_end(self)
        if self.info.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
        return {"step": self.step, "epoch": self.epoch, "metrics": metrics, "best": dict(self.best),
                "seconds": time.perf_counter() - start}

    def _evaluate(self) -> dict[str, Any]:
        assert self.val_loader is not None
        metrics = evaluate(self.model, self.val_loader, self.task, self.device, self.config.amp)
        value = metrics.get(self.task.primary_metric)
        if isinstance(value, float) and value == value and (self.best["value"] is None or value > self.best["value"]):
            self.best.update(value=value, step=self.step)
        for cb in self.callbacks:
            cb.on_eval(self, self.step, metrics)
        return metrics

    def _log(self, window: list[dict[str, float]], metrics: dict[str, Any] | None, seconds: float, bar: Any) -> None:
        # Means over the steps since the last line: one step's loss is too noisy to read.
        # grad_norm is nan on a step whose model was replaced; leave those out of its mean.
        means: dict[str, float] = {}
        for k in sorted({k for parts in window for k in parts}):
            values = [p[k] for p in window if k in p and p[k] == p[k]]
            means[k] = sum(values) / len(values) if values else float("nan")
        grad_norm = means.pop("grad_norm", float("nan"))
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "lr": self.schedule.lr(self.step - 1) if self.schedule else None,
                                  "loss": means, "grad_norm": grad_norm, "seconds": round(seconds, 3)}
        if metrics is not None:
            record["metrics"] = metrics
        self.log.write(record)
        if "total" in means:
            bar.set_postfix(loss=f"{means['total']:.4f}", refresh=False)

    # ----------------------------------------------------------------- checkpoints
    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call this)."""
        return save_training_state(self)

    def _resume(self) -> int | None:
        """Load the newest checkpoint, if any; return its step (None: fresh start)."""
        return resume_training_state(self)
