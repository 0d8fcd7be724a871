"""``cpd run CONFIG.yaml``: the whole pipeline (comb, prune, distil, export, report) from a file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.markup import escape

from cpd.cli.common import console, positive_int
from cpd.cli.parser import CliError, HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd run --example > cpd-run.yaml         (every key, commented, with its default)
  cpd run examples/digits-demo.yaml
  cpd run cpd-run.yaml --set train.lr=5e-4 --set prune.macs=0.4 --out runs/macs40
  cpd run cpd-run.yaml --set data.options.size=32 --check

Sections: model, data, task, pretrain, prune, train (cpd.train.TrainConfig, key for
key), export, report. Unknown keys are errors that name the closest valid key.
--set KEY=VALUE takes a dotted key and a YAML value (5e-4, true, null, [1, 8],
{size: 32}) and may be repeated; later ones win.

Writes to report.out (or --out): model/ (a cpd folder: cpd.io.load, cpd eval, cpd
bench), report.json, report.md, plots, model.onnx, config.yaml (the resolved config)
and run/ (training log and checkpoints). 'cpd report OUT' prints it again.
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="the full pipeline from a YAML config: prune with distillation, fine-tune, "
             "evaluate, export, report",
        description="Run Comb, Prune, Distill end to end as a YAML config describes: build or load "
                    "the model, optionally train it, prune it inside training with the original "
                    "as the teacher, fine-tune, evaluate, export to ONNX and write a report.")
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="the config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set train.lr=5e-4 (repeatable)")
    p.add_argument("--out", metavar="DIR", help="output folder (same as --set report.out=DIR)")
    p.add_argument("--example", action="store_true",
                   help="print the commented example config (every key) and exit")
    p.add_argument("--check", action="store_true",
                   help="validate the config and --set, print the resolved config, and exit")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch intra-op threads for the run (default: torch's setting)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cpd.config.load import dump_config, load_config

    if args.example:
        from cpd.config.example import render_example

        sys.stdout.write(render_example())
        return 0
    if not args.config:
        raise CliError("give a CONFIG.yaml; 'cpd run --example > cpd-run.yaml' writes a commented "
                       "one with every key")
    config = load_config(args.config, args.overrides)
    if args.out:  # taken as is: through --set, a folder named "null" or "1" would be YAML
        config.report.out = args.out
    if args.check:
        sys.stdout.write(dump_config(config))
        return 0
    import torch

    from cpd.config.runner import run_config

    if args.threads:
        torch.set_num_threads(args.threads)
    out = console()
    summary = run_config(config, console=out)
    files = "model/, report.json, report.md, *.png, config.yaml" + (", model.onnx" if summary.get("onnx") else "")
    out.print(escape(f"wrote {config.report.out}/ ({files})"))
    return 0
