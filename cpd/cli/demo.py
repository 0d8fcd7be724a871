"""``cpd demo``: the embedded default — Comb, Prune, Distill a CNN on digits."""

from __future__ import annotations

import argparse
from typing import Any

from cpd.cli.common import positive_int
from cpd.cli.parser import HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd demo                       # writes ./cpd-demo
  cpd demo --out /tmp/demo --macs 0.4
  cpd demo --importance magnitude --alpha 0

What it does: trains a small residual CNN on scikit-learn's digits (real 8x8
handwritten digits that ship with scikit-learn, upsampled to 16x16), then runs the
full pipeline: comb the model, score channels with the Hessian (Fisher) criterion on
the distillation + task loss, prune in --steps steps to --macs of the original MACs,
remove the channels physically, and fine-tune with the original as the teacher.
It prints a before/after table (accuracy, MACs, params, CPU latency) and writes the
pruned model (load it with cpd.io.load(OUT/model)), report.json, report.md and plots.
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="prune and distil a real CNN on real data (a few CPU minutes)",
        description="Run Comb, Prune, Distill end to end on scikit-learn's digits.")
    p.add_argument("--out", default="cpd-demo", metavar="DIR",
                   help="output folder (default: ./cpd-demo)")
    p.add_argument("--macs", type=float, default=0.5, metavar="F",
                   help="target MACs as a fraction of the original (default: 0.5)")
    p.add_argument("--importance", default="hessian", metavar="NAME",
                   help="importance criterion (default: hessian, the paper's)")
    p.add_argument("--alpha", type=float, default=0.7, metavar="A",
                   help="weight of the distillation loss; 0 disables distillation (default: 0.7)")
    p.add_argument("--steps", type=positive_int, default=4, metavar="N",
                   help="pruning steps (default: 4)")
    p.add_argument("--finetune-steps", type=positive_int, default=300, metavar="N",
                   help="optimizer steps of fine-tuning after the last pruning step (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch intra-op threads; the demo model is tiny, so 1 is fastest "
                        "(default: 1)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cpd.pipeline.demo import run_demo
    from cpd.scores import available

    if not 0.0 < args.macs <= 1.0:
        raise ValueError(f"--macs must be in (0, 1], got {args.macs}")
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.importance not in available():
        raise ValueError(f"--importance must be one of {', '.join(available())}, "
                         f"got {args.importance!r}")
    import torch

    torch.set_num_threads(args.threads)
    run_demo(args.out, macs=args.macs, importance=args.importance, alpha=args.alpha,
             steps=args.steps, finetune_steps=args.finetune_steps, seed=args.seed)
    print(f"wrote {args.out}/ (model/, report.json, report.md, *.png)")
    return 0
