"""``cpd prune``: one-shot structured pruning, optionally saved as a cpd folder."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from cpd.cli.common import (
    add_model_arguments,
    console,
    csv_names,
    fraction,
    open_cli_model,
    positive_int,
    print_json,
)
from cpd.cli.parser import CliError, HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd prune hf:vit --ratio 0.3 --out vit-pruned
  cpd prune "hf:resnet?num_labels=10" --macs 0.5 --round-to 8 --out resnet-half
  cpd prune py:mymodels:make_net --params 0.6 --ignore head --input-shape 1,3,32,32
  cpd prune "hf:resnet?num_labels=10" --latency 0.5 --latency-batch-size 8 --threads 1 --out fast
  cpd prune py:mymodels:make_net --ratio 0.4 --importance taylor --data cifar10:/data/cifar10
  cpd prune ./vit-pruned --ratio 0.2 --out vit-pruned-more      (prune a pruned folder again)

The magnitude and random criteria need no data. The data-driven criteria (hessian,
obd, taylor) need --data: NAME[:ROOT][?key=value&...] names a dataset of
cpd.data.build_dataset (digits, cifar10, cifar100, imagefolder, camvid, ade20k...),
whose training split is read in order for --batches batches.

--latency F times the model on this machine (CPU: thread CPU time with one thread,
else wall time) and removes channels until the pruned forward takes at most F of
the original's at --latency-batch-size images; the result says what was measured.
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    from cpd.scores import available

    p = sub.add_parser(
        "prune", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="remove channels and report MACs / parameters before and after",
        description="Prune a model in one shot, print MACs and parameters before and after, and "
                    "with --out save it as a folder (safetensors weights + plan) that 'cpd.io.load' "
                    "and every cpd subcommand read.")
    add_model_arguments(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--ratio", type=fraction, metavar="R",
                        help="remove this fraction of the channels of every prunable group, in [0, 1)")
    target.add_argument("--macs", type=fraction, metavar="F",
                        help="keep at most this fraction of the MACs, in (0, 1]")
    target.add_argument("--params", type=fraction, metavar="F",
                        help="keep at most this fraction of the parameters, in (0, 1]")
    target.add_argument("--latency", type=fraction, metavar="F",
                        help="keep the measured latency at most this fraction of the original's, "
                             "in (0, 1] (timed on this machine with --threads threads)")
    p.add_argument("--importance", default="magnitude", choices=available(), metavar="NAME",
                   help=f"channel importance criterion: {', '.join(available())}")
    p.add_argument("--ignore", type=csv_names, default=[], metavar="M1,M2",
                   help="module names whose channels must stay (comma-separated)")
    p.add_argument("--round-to", type=positive_int, metavar="N",
                   help="kept channel counts are multiples of N")
    p.add_argument("--allocation", choices=("global", "uniform"), default="global",
                   help="with --macs/--params: rank all channels together (global, default) or "
                        "remove the same fraction from every layer (uniform)")
    p.add_argument("--head-dim", action="store_true",
                   help="also prune the per-head dimension of attention (default: whole heads only)")
    p.add_argument("--data", metavar="NAME[:ROOT]",
                   help="dataset for the data-driven criteria, e.g. cifar10:/data/cifar10")
    p.add_argument("--batches", type=positive_int, default=4, metavar="N",
                   help="batches of --data to score with")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N",
                   help="images per --data batch")
    p.add_argument("--latency-batch-size", type=positive_int, metavar="N",
                   help="images per forward when timing for --latency (default: 1)")
    p.add_argument("--latency-tol", type=fraction, metavar="X",
                   help="relative tolerance of the --latency search (default: 0.05)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch intra-op threads (default: torch's setting); --latency is measured "
                        "with them, so prune with the thread count you will deploy with")
    p.add_argument("--out", metavar="DIR", help="save the pruned model to this folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def _data(args: argparse.Namespace, loaded: Any) -> tuple[Any, Any]:
    from cpd.scores import get_criterion

    needs_data = get_criterion(args.importance).requires_data
    if needs_data and not args.data:
        raise CliError(f"--importance {args.importance} scores channels from gradients on data: pass "
                       "--data NAME[:ROOT] (e.g. cifar10:/data/cifar10), or use --importance "
                       "magnitude or random, which need none")
    if not needs_data:
        return None, None
    from cpd.cli.data_arg import scoring_data

    return scoring_data(args.data, loaded.inputs, args.batch_size)


def run(args: argparse.Namespace) -> int:
    import cpd
    from cpd.plan.latency_search import DEFAULT_TOL

    if args.data and args.importance in ("magnitude", "random"):
        raise CliError(f"--data is only used by the data-driven criteria; --importance "
                       f"{args.importance} ignores it")
    if args.out:
        from cpd.io.save import check_destination

        check_destination(args.out)  # before pruning, not after
    for flag, value in (("--latency-batch-size", args.latency_batch_size), ("--latency-tol", args.latency_tol)):
        if value is not None and args.latency is None:
            raise CliError(f"{flag} only applies with --latency F")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = open_cli_model(args)
    data, loss_fn = _data(args, loaded)
    result = cpd.prune(loaded.model, loaded.example_inputs(), ratio=args.ratio, macs=args.macs,
                       params=args.params, latency=args.latency,
                       latency_batch_size=args.latency_batch_size or 1,
                       latency_tol=args.latency_tol if args.latency_tol is not None else DEFAULT_TOL,
                       importance=args.importance, ignore=args.ignore,
                       round_to=args.round_to, head_dim=args.head_dim, allocation=args.allocation,
                       data=data, loss_fn=loss_fn,
                       batches=args.batches if data is not None else None, inplace=True)
    prunable = len(result.comb.prunable(head_dim=args.head_dim))
    summary = {
        "model": args.model,
        "input_shape": list(loaded.inputs.shape),
        "macs": list(result.macs),
        "params": list(result.params),
        "groups_pruned": len(result.plan.keep),
        "groups_prunable": prunable,
        "channels_removed": result.plan.removed(),
        "rolled_back": list(result.rolled_back),
        "latency": _latency(args, result.plan.meta),
        "out": None,
    }
    if args.out:
        from cpd.io.save import save_pruned

        save_pruned(args.out, result.model, result.plan, loaded.source, loaded.inputs,
                    base_plans=loaded.plans, macs=result.macs, params=result.params)
        summary["out"] = args.out
    if args.json:
        print_json(summary)
    else:
        _print(summary)
    return 0


def _latency(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any] | None:
    """For --latency: the measured fraction and medians (ms) before and after, from the plan."""
    if args.latency is None:
        return None
    search = meta.get("latency_search") or {}
    import torch

    return {"target": args.latency, "fraction": meta.get("latency"),
            "ms": search.get("latency_ms"), "batch_size": args.latency_batch_size or 1,
            "threads": torch.get_num_threads()}


def _print(s: dict[str, Any]) -> None:
    from cpd.io.card import human, percent_change

    title = escape(f"pruned {s['model']} (input {tuple(s['input_shape'])})")
    table = Table()
    for col in ("", "before", "after", "change"):
        table.add_column(col, justify="left" if not col else "right")
    for name, key in (("MACs", "macs"), ("params", "params")):
        before, after = s[key]
        table.add_row(name, human(before), human(after), percent_change(before, after))
    out = console()
    out.print(title)
    out.print(table)
    out.print(f"groups pruned: {s['groups_pruned']} of {s['groups_prunable']} prunable; "
              f"channels removed: {s['channels_removed']}")
    out.print(f"rolled back (pruning them broke the forward): {s['rolled_back'] or 'none'}")
    lat = s.get("latency")
    if lat and lat["fraction"] is not None:
        ms = lat["ms"] or []
        parts = [f"{ms[0]:.2f} -> {ms[1]:.2f} ms"] if len(ms) == 2 else []
        parts += [f"batch {lat['batch_size']}", f"{lat['threads']} thread{'s' if lat['threads'] != 1 else ''}", f"target {lat['target']:g}"]
        out.print(f"latency: {lat['fraction']:.3f} of the original ({', '.join(parts)})")
    if s["out"]:
        out.print(escape(f"saved to {s['out']}"))
