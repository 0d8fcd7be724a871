"""``cpd comb``: show the coupled channel groups of a model."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from cpd.cli.common import (
    add_model_arguments,
    console,
    csv_names,
    open_cli_model,
    print_json,
)
from cpd.cli.parser import HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd comb hf:vit
  cpd comb "hf:vit?hidden_size=192&num_attention_heads=3&image_size=64" --all
  cpd comb py:mymodels:make_net --input-shape 1,3,32,32 --json > groups.json
  cpd comb ./vit-pruned
"""
_SHOWN = 3  # member modules listed per group without --all


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "comb", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="show the groups of coupled channels",
        description="Trace one forward pass and list the groups of channels that must be pruned "
                    "together: prunable groups, and (with --all) frozen ones with the reason.")
    add_model_arguments(p)
    p.add_argument("--ignore", type=csv_names, default=[], metavar="M1,M2",
                   help="module names whose channels must stay (comma-separated)")
    p.add_argument("--all", action="store_true",
                   help="also list frozen groups, and every member module instead of the first few")
    p.add_argument("--json", action="store_true", help="print the full comb result as JSON")
    p.set_defaults(run=run)


def _abbrev(items: list[str], show_all: bool) -> str:
    if show_all or len(items) <= _SHOWN:
        return ", ".join(items)
    return ", ".join(items[:_SHOWN]) + f" (+{len(items) - _SHOWN} more)"


def run(args: argparse.Namespace) -> int:
    import cpd

    loaded = open_cli_model(args)
    result = cpd.comb(loaded.model, loaded.example_inputs(), ignore=args.ignore)
    if args.json:
        print_json(result.to_json())
        return 0
    groups = result.groups if args.all else [g for g in result.groups if g.prunable]
    title = escape(f"channel groups of {args.model} (input {tuple(loaded.inputs.shape)})")
    table = Table()
    for col in ("id", "size", "role", "status", "modules"):
        table.add_column(col, justify="right" if col in ("id", "size") else "left", overflow="fold")
    for g in groups:
        if not g.prunable:
            status = "frozen: " + _abbrev(g.reasons or ["?"], args.all)
        else:  # prune leaves per-head dims alone unless asked
            status = "prunable (with --head-dim)" if g.role == "head_dim" else "prunable"
        table.add_row(str(g.id), str(g.size), g.role, escape(status), escape(_abbrev(g.modules, args.all)))
    out = console()
    out.print(title)
    out.print(table)
    prunable = [g for g in result.groups if g.prunable]
    frozen = len(result.groups) - len(prunable)
    out.print(f"{len(result.groups)} groups: {len(prunable)} prunable "
              f"({sum(g.size for g in prunable)} channels), {frozen} frozen"
              + ("" if args.all or not frozen else " (--all lists them)"))
    if result.unknown_ops:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(result.unknown_ops.items()))
        out.print(escape(f"ops without a channel rule (their channels are frozen): {ops}"))
    return 0
