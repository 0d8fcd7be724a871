"""A runnable end-to-end example: train a teacher, then prune + distil a student, on digits.

    python -m cpd.train --out runs/digits
    torchrun --nproc_per_node 2 -m cpd.train --out runs/digits_ddp
    python -m cpd.train --out runs/digits --resume      # continue after a kill

It doubles as the reference for writing a pruning callback: :class:`HessianPrune`
accumulates data-driven scores during training, sums them over ranks, prunes at a
fixed step, stores its Plan in the checkpoints and rebuilds the pruned model on resume.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cpd.api import comb
from cpd.apply.apply import apply_plan
from cpd.data import build_dataset
from cpd.inputs import evaluating
from cpd.plan.plan import Plan
from cpd.plan.select import select_uniform
from cpd.report.counting import count_params
from cpd.scores import get_criterion
from cpd.tasks import build_task
from cpd.train.callbacks import Callback
from cpd.train.config import TrainConfig
from cpd.train.distributed import all_reduce_scores, init_distributed
from cpd.train.trainer import BatchLoss, Trainer


def small_cnn() -> nn.Module:
    """A 3-stage CNN for 1x16x16 digits (~20k parameters)."""
    torch.manual_seed(0)  # same architecture *and* weights on every rank and every resume
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


class HessianPrune(Callback):
    """Score channels over ``score_batches`` batches, then prune ``ratio`` of each group.

    Args:
        base: the unpruned architecture, rebuilt on resume (weights come from the checkpoint).
        example: an input batch ``(1, C, H, W)`` to trace.
        at: the step to prune at; scoring runs on the ``score_batches`` steps before it.
    """

    def __init__(self, base: nn.Module, example: torch.Tensor, at: int, ratio: float, score_batches: int = 8) -> None:
        self.base, self.example, self.at, self.ratio, self.score_batches = base, example, at, ratio, score_batches
        self.plan: dict[str, Any] | None = None
        self.crit: Any = None

    def on_batch(self, trainer: Trainer, step: int, inputs: Any, targets: Any, loss_fn: BatchLoss) -> nn.Module | None:
        if self.plan is not None or step < self.at - self.score_batches:
            return None
        model = trainer.model
        if self.crit is None:
            with evaluating(model):  # a train-mode trace would move the BN running statistics
                self.comb = comb(model, self.example.to(trainer.device))
            self.crit = get_criterion("hessian", per_sample=False).prepare(model, self.comb.prunable())
        # Scores the exact training objective (KD + task); BN layers are put in eval meanwhile.
        # A resume inside the scoring window re-scores from there: not bit-exact in that case.
        self.crit.accumulate(model, inputs, targets, loss_fn)
        if step < self.at:
            return None
        scores = all_reduce_scores(self.crit.scores())  # every rank removes the same channels
        keep = select_uniform(self.comb.prunable(), scores, self.ratio)
        plan = Plan.from_comb(self.comb, keep, importance="hessian", ratio=self.ratio)
        self.plan = plan.to_json()
        return apply_plan(model, plan)

    def checkpoint_extra(self, trainer: Trainer) -> dict[str, Any]:
        return {"plan": self.plan} if self.plan is not None else {}

    def on_resume(self, trainer: Trainer, extra: dict[str, Any]) -> nn.Module | None:
        self.plan = extra["plan"]
        return apply_plan(copy.deepcopy(self.base), Plan.from_json(self.plan))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (teacher/ and student/ inside)")
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--student-steps", type=int, default=300)
    p.add_argument("--prune-at", type=int, default=50)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)

    info = init_distributed()  # owned here: both trainers reuse the group
    train, val = (build_dataset("digits", split=s, size=16) for s in ("train", "val"))
    task = build_task("classification")
    common = dict(batch_size=args.batch_size, eval_every=100, log_every=20, resume=args.resume)

    teacher = small_cnn()
    t_cfg = TrainConfig(max_steps=args.teacher_steps, lr=3e-3, warmup_steps=20, alpha=0.0, out_dir=f"{args.out}/teacher", **common)
    t_sum = Trainer(teacher, task, train, val, config=t_cfg).fit()

    example = train[0][0][None]
    prune = HessianPrune(small_cnn(), example, at=args.prune_at, ratio=args.ratio)
    s_cfg = TrainConfig(max_steps=args.student_steps, lr=1e-3, warmup_steps=10, alpha=args.alpha, out_dir=f"{args.out}/student", **common)
    student = Trainer(copy.deepcopy(teacher), task, train, val, config=s_cfg, teacher=teacher, callbacks=[prune])
    s_sum = student.fit()
    if info.is_main:
        print(f"teacher: top1 {t_sum['best']['value']:.2f}%  params {count_params(teacher):,}")
        print(f"student: top1 {s_sum['best']['value']:.2f}%  params {count_params(student.model):,}  (ratio {args.ratio})")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
