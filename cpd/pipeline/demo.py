"""The embedded demo: Comb, Prune, Distill a small CNN on scikit-learn's digits.

Real data that ships with a dependency (1,797 8x8 handwritten digits, upsampled to
16x16), a real model trained here first, then the full pipeline to about half the
MACs, and a before/after table. Everything it writes goes to ``out``:
``model/`` (a cpd folder: ``cpd.load("out/model")``), ``report.json``,
``report.md`` and PNG plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cpd.data import build_dataset
from cpd.pipeline.report import write_report
from cpd.pipeline.run import CPDResult, example_batch, run_cpd
from cpd.tasks import build_task
from cpd.train.config import TrainConfig
from cpd.train.trainer import Trainer

SOURCE = "py:cpd.pipeline.demo:demo_cnn"


def demo_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 32) -> nn.Module:
    """A 4-conv CNN with a residual block for (B, 1, 16, 16) digits (~60k params)."""

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.body(x))

    w = width
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        Block(2 * w),
        nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, num_classes),
    )


def run_demo(out: str | Path = "cpd-demo", *, macs: float = 0.5, teacher_steps: int = 400,
             steps: int = 4, interval: int = 25, score_batches: int = 8,
             finetune_steps: int = 300,
             importance: str = "hessian", alpha: float = 0.7, seed: int = 0,
             progress: bool = True) -> CPDResult:
    """Train the demo CNN, compress it with CPD, write the model and report to ``out``."""
    out = Path(out)
    torch.manual_seed(seed)
    train, val = (build_dataset("digits", split=s, size=16, seed=seed) for s in ("train", "val"))
    task = build_task("classification")
    common: dict[str, Any] = dict(batch_size=32, log_every=25, progress=progress, seed=seed)
    model = demo_cnn()
    Trainer(model, task, train, val, config=TrainConfig(
        max_steps=teacher_steps, lr=3e-3, warmup_steps=20, alpha=0.0, **common)).fit()
    example = example_batch(train)
    cfg = TrainConfig(max_steps=steps * interval + finetune_steps, lr=1e-3, warmup_steps=10,
                      alpha=alpha, out_dir=str(out / "run"), eval_every=0, **common)
    result = run_cpd(model.eval(), task, train, val, example, config=cfg, steps=steps,
                     interval=interval, score_batches=score_batches, macs=macs,
                     importance=importance)
    write_report(out, result, source=SOURCE, example_shape=tuple(example.shape),
                 title="cpd demo: small CNN on scikit-learn digits")
    (out / "demo.json").write_text(json.dumps({"macs_target": macs, "importance": importance,
                                                "alpha": alpha, "steps": steps}, indent=2))
    return result
