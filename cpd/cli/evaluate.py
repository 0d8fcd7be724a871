"""``cpd eval``: the task metric of a model on a dataset split."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from cpd.cli.common import MODEL_HELP, console, positive_int, print_json
from cpd.cli.parser import HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd eval cpd-digits/model --data "digits?size=16"
  cpd eval ./segformer-pruned --data camvid:/data/camvid --split test --json
  cpd eval "hf:vit?image_size=32&num_labels=10" --data cifar10:/data/cifar10 --limit 512

--data is NAME[:ROOT][?key=value&...]: a dataset of cpd.data.build_dataset (digits,
camvid, camvid_patches, imagefolder, cifar10, cifar100, ade20k) with its options, as
for 'cpd prune --data'. The task (classification: top-1/top-5 accuracy;
segmentation: mIoU, pixel accuracy, per-class IoU with the dataset's ignore label)
follows from the dataset unless --task says otherwise. The model must predict at
least as many classes as the dataset has.
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    from cpd.tasks.task import TASK_NAMES

    p = sub.add_parser(
        "eval", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="evaluate a model on a dataset split (accuracy, mIoU...)",
        description="Evaluate a model string or a saved cpd folder on a dataset split and print "
                    "the task's metrics.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", required=True, metavar="NAME[:ROOT]",
                   help="the dataset, e.g. digits?size=16 or camvid:/data/camvid")
    p.add_argument("--split", default="val", help="split to evaluate: train, val or test")
    p.add_argument("--task", choices=TASK_NAMES, metavar="NAME",
                   help=f"{' or '.join(TASK_NAMES)} (default: the dataset's task)")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="images per batch")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N images")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch intra-op threads (default: torch's setting)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader, Subset

    from cpd.cli.data_arg import parse_data
    from cpd.config.datasets import (
        check_classes,
        example_input,
        in_model_form,
        open_split,
        task_for,
    )
    from cpd.inputs import model_device
    from cpd.io.resolve import open_model
    from cpd.train.evaluate import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = parse_data(args.data)
    raw = open_split(spec.name, spec.root, args.split, spec.options, what=f"--data {args.data}")
    loaded = open_model(args.model)
    task = task_for(raw, args.task)
    example = example_input(raw, loaded.inputs)
    check_classes(loaded.model, example, task, raw, f"--data {args.data}")
    data = in_model_form(raw, loaded.inputs)
    n = len(data) if args.limit is None else min(args.limit, len(data))  # type: ignore[arg-type]
    subset = data if n == len(data) else Subset(data, range(n))  # type: ignore[arg-type]
    loader = DataLoader(subset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    metrics = evaluate(loaded.model, loader, task, model_device(loaded.model, example))
    if args.json:
        print_json({"model": args.model, "data": args.data, "split": args.split, "images": n,
                    "task": task.name, "primary_metric": task.primary_metric, "metrics": metrics})
        return 0
    _print(args, n, task.primary_metric, metrics)
    return 0


def _print(args: argparse.Namespace, n: int, primary: str, metrics: dict[str, Any]) -> None:
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(f"{name} (primary)" if name == primary else name, f"{float(value):.2f}")
    out = console()
    out.print(escape(f"{args.model} on {args.data}, split {args.split} ({n} images)"))
    out.print(table)
    lists = [k for k, v in metrics.items() if not isinstance(v, (int, float))]
    if lists:
        out.print(escape(f"also in --json: {', '.join(lists)}"))
