"""Settings, base-model training, scoring batches and evaluation of the criteria benchmark."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from criteria_data import PatchTensors
from criteria_models import build_model
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cpd.tasks import build_task
from cpd.train import TrainConfig, Trainer
from cpd.train.evaluate import evaluate

__all__ = ["CAMVID", "FULL", "QUICK", "TASK", "Batches", "log", "make_eval", "scoring_batches", "train_base"]

CAMVID = Path(os.environ.get("CPD_CAMVID", "/work/shared/data/camvid"))
TASK = "camvid_patches"
Batches = list[tuple[Tensor, Tensor]]

FULL: dict[str, Any] = dict(model="resnet", train_frames=None, test_frames=None, steps=1200, batch_size=64, lr=2e-3,
                            warmup=60, score_batches=16, score_batch_size=32, seeds=5, targets=(0.7, 0.5),
                            iter_steps=(4, 8), resamples=4)
QUICK: dict[str, Any] = dict(model="resnet-tiny", train_frames=12, test_frames=6, steps=20, batch_size=32, lr=2e-3,
                             warmup=2, score_batches=2, score_batch_size=8, seeds=2, targets=(0.7, 0.5),
                             iter_steps=(2,), resamples=1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_base(cfg: dict[str, Any], train: PatchTensors, checkpoint: Path | None) -> tuple[nn.Module, float | None]:
    """The trained base model and its training time in seconds.

    With ``checkpoint``: loaded from there if it exists (the training time from the
    ``.json`` written next to it, ``None`` if there is none), else trained and saved
    there with that ``.json``.
    """
    model = build_model(cfg["model"], num_classes=11, seed=0)
    side = checkpoint.with_suffix(".json") if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        seconds = json.loads(side.read_text()).get("train_s") if side is not None and side.exists() else None
        log(f"loaded base model from {checkpoint}")
        return model.eval(), seconds
    config = TrainConfig(max_steps=cfg["steps"], batch_size=cfg["batch_size"], optimizer="adamw", lr=cfg["lr"],
                         weight_decay=0.05, warmup_steps=cfg["warmup"], schedule="cosine", progress=False,
                         alpha=0.0, seed=0, log_every=10**9, amp="none")
    trainer = Trainer(model, build_task("classification"), train, None, config=config, device="cpu")
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    model = trainer.model.eval()
    if checkpoint is not None and side is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), checkpoint)
        side.write_text(json.dumps({"train_s": seconds, "steps": cfg["steps"], "model": cfg["model"]}))
    return model, seconds


def make_eval(test: PatchTensors) -> Callable[[nn.Module], float]:
    """``model -> top-1 (%)`` on ``test`` (eval mode, batches of 256)."""
    task = build_task("classification")
    loader = DataLoader(test, batch_size=256, shuffle=False)

    def run(model: nn.Module) -> float:
        return float(evaluate(model, loader, task, torch.device("cpu"))["top1"])

    return run


def scoring_batches(images: Tensor, labels: Tensor, n: int, bs: int, set_index: int = 0) -> Batches:
    """``n`` fixed batches of ``bs`` distinct training samples (seeded, no augmentation).

    ``set_index`` picks another set of the same size, disjoint from the others.
    """
    g = torch.Generator().manual_seed(1234)
    idx = torch.randperm(len(labels), generator=g)[set_index * n * bs:(set_index + 1) * n * bs]
    if len(idx) < n * bs:
        raise ValueError(f"{len(labels)} samples are too few for scoring set {set_index} of {n} x {bs}")
    return [(images[idx[i * bs:(i + 1) * bs]].contiguous(), labels[idx[i * bs:(i + 1) * bs]].contiguous())
            for i in range(n)]
