"""``run_cpd``: comb, prune with distillation, fine-tune with distillation, measure.

The original model is the frozen teacher throughout (logit KD, and feature KD on
``config.feature_layers`` when set). Pruning runs inside the
training loop (:class:`~cpd.pipeline.prune_callback.PruneDuringTraining`): scores come
from the KD + task loss, channels are masked step by step and removed physically
at the last pruning step; the remaining budget fine-tunes the smaller model with
distillation.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cpd.distill.feature_taps import check_feature_layers
from cpd.inputs import batch_like
from cpd.pipeline.prune_callback import PruneDuringTraining
from cpd.plan.plan import Plan
from cpd.report.counting import count
from cpd.report.latency import measure_latency
from cpd.tasks.task import Task
from cpd.train.config import TrainConfig
from cpd.train.evaluate import evaluate
from cpd.train.trainer import Trainer


@dataclass
class Measured:
    """One model's numbers: task metric, MACs and params, CPU latency (ms)."""

    metric: float
    macs: int
    params: int
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class CPDResult:
    """What :func:`run_cpd` returns (``model`` is the pruned, fine-tuned student)."""

    model: nn.Module
    plan: Plan
    baseline: Measured
    pruned: Measured
    history: list[dict[str, float]]
    metric_name: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable numbers (no model)."""
        return {"metric": self.metric_name, "baseline": asdict(self.baseline),
                "pruned": asdict(self.pruned), "history": self.history,
                "macs_fraction": self.pruned.macs / max(self.baseline.macs, 1),
                "params_fraction": self.pruned.params / max(self.baseline.params, 1),
                "seconds": self.seconds}


def measure(model: nn.Module, task: Task, val: Dataset, example_inputs: Any,
            batch_sizes: tuple[int, ...] = (1, 8), threads: int | None = 1) -> Measured:
    """Metric on ``val``, MACs/params at batch 1, and latency per batch size."""
    loader = DataLoader(val, batch_size=64)
    dev = next(model.parameters()).device
    metrics = evaluate(model, loader, task, dev)
    macs, params = count(model, example_inputs)
    lat = {}
    for bs in batch_sizes:
        lat[f"bs{bs}"] = measure_latency(model, batch_like(example_inputs, bs), threads=threads).median_ms
    return Measured(float(metrics[task.primary_metric]), macs, params, lat)


def run_cpd(
    model: nn.Module, task: Task, train: Dataset, val: Dataset, example_inputs: Any, *,
    config: TrainConfig, steps: int = 4, interval: int = 25, start: int = 0,
    score_batches: int | None = None, latency_batch_sizes: tuple[int, ...] = (1, 8), **prune: Any,
) -> CPDResult:
    """Compress a trained ``model`` with Comb, Prune, Distill.

    Args:
        model: the trained model; it is not modified (it becomes the frozen teacher).
        task: classification or segmentation (:func:`cpd.tasks.build_task`).
        train, val: datasets of ``(input, target)``.
        example_inputs: one input batch (batch 1) for tracing and counting.
        config: the training budget (``max_steps`` covers pruning and fine-tuning),
            the distillation weight ``alpha`` (0 disables logit KD) and optional feature
            KD (``feature_layers``: module names of ``model``, ``feature_weight``),
            compared at the channels each pruning step keeps.
        steps, interval, start: pruning schedule in optimizer steps.
        score_batches: batches scored before each pruning step (default: all of the
            interval).
        prune: ``macs=`` / ``ratio=`` / ``params=`` and ``importance=`` etc., and
            ``mode="mask"`` (default) or ``"physical"`` (remove channels at every
            pruning step; see :class:`~cpd.pipeline.prune_callback.PruneDuringTraining`).

    Raises:
        ValueError: the budget ends before the last pruning step.
    """
    t0 = time.perf_counter()
    last = start + steps * interval
    total = config.max_steps
    if total is not None and total < last:
        raise ValueError(f"max_steps={total} ends before the last pruning step ({last}); "
                         "raise max_steps or lower steps/interval")
    if config.feature_layers:  # a typo should fail before the baseline is measured
        check_feature_layers(model, config.feature_layers)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    baseline = measure(teacher, task, val, example_inputs, latency_batch_sizes)
    val_loader = DataLoader(val, batch_size=64)

    def metric_of(m: nn.Module) -> float:
        return float(evaluate(m, val_loader, task, next(m.parameters()).device)[task.primary_metric])

    cb = PruneDuringTraining(model, example_inputs, steps=steps, interval=interval, start=start,
                             score_batches=score_batches, evaluate_fn=metric_of, **prune)
    student = copy.deepcopy(model)
    trainer = Trainer(student, task, train, val, config=config,
                      teacher=teacher if config.alpha > 0 or config.feature_layers else None, callbacks=[cb])
    trainer.fit()
    if cb.plan is None:
        raise RuntimeError("training ended before the pruning schedule finished")
    pruned_model = trainer.model.eval()
    pruned = measure(pruned_model, task, val, example_inputs, latency_batch_sizes)
    history = cb.pruner.history if cb.pruner is not None else []
    return CPDResult(pruned_model, cb.plan, baseline, pruned, history, task.primary_metric,
                     time.perf_counter() - t0)


def example_batch(dataset: Dataset) -> torch.Tensor:
    """First item of ``dataset`` as a batch of one (the tracing input)."""
    x = dataset[0][0]
    return x[None] if isinstance(x, torch.Tensor) else x
