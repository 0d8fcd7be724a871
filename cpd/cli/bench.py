"""``cpd bench``: latency and throughput per batch size, PyTorch and ONNX Runtime."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from cpd.cli.common import MODEL_HELP, console, csv_ints, positive_int, print_json
from cpd.cli.parser import HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd bench hf:vit --batch-sizes 1,8
  cpd bench ./vit-pruned --onnx --threads 4
  cpd bench py:mymodels:make_net --input-shape 1,3,32,32 --repeats 50 --json
  cpd bench "hf:resnet?num_labels=10" ./resnet-half --onnx --threads 1   (speed-up column)

Protocol: --warmup untimed runs, then up to --repeats timed runs (stopping early
once --max-seconds have passed, after at least 5); median and 90th percentile of
the per-run wall time, and throughput = batch size / median. With --onnx the
model is exported to a temporary file, checked against PyTorch, and timed with
onnxruntime using the same number of threads.

With several models (e.g. the original and its pruned folder), all are built and
exported first; then the timed runs of each backend and batch size are split into
--rounds rounds that alternate between the models (A B, B A, ...), so that a change
in machine load hits all of them alike. A model's median is the median of its round
medians; the speed-up column is the median over rounds of the first model's median
over this one's. On a shared machine fix --threads (1 is the most stable).
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="measure latency (median, p90) and throughput; compare models",
        description="Time the forward pass at each batch size, in PyTorch and optionally in "
                    "ONNX Runtime; with several models, also the speed-up over the first.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help=f"{MODEL_HELP}; with several, the first is the baseline of the speed-up")
    p.add_argument("--input-shape", metavar="B,C,H,W",
                   help="example input shape, e.g. 1,3,224,224 (default: from the model's config "
                        "or saved folder, else 1,3,224,224)")
    p.add_argument("--batch-sizes", type=csv_ints, default=[1, 8], metavar="B1,B2",
                   help="batch sizes to time, comma-separated (default: 1,8)")
    p.add_argument("--onnx", action="store_true", help="also time the ONNX export with onnxruntime")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="intra-op threads for PyTorch and onnxruntime (default: torch's setting)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed runs first")
    p.add_argument("--repeats", type=positive_int, default=20, metavar="N", help="most timed runs")
    p.add_argument("--max-seconds", type=float, default=30.0, metavar="S",
                   help="time budget for the timed runs of one batch size")
    p.add_argument("--rounds", type=positive_int, metavar="N",
                   help="split the timed runs into N rounds that alternate between the models "
                        "(default: 1 for one model, 4 for several)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=run)


def _timers(args: argparse.Namespace, model: str, tmp: Path, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's counts (``{"model", "input_shape", "macs", "params"}``) and ``{backend: timer}``."""
    import cpd
    from cpd.io.resolve import open_model
    from cpd.io.spec import parse_shape
    from cpd.report.latency import measure_latency

    loaded = open_model(model, input_shape=parse_shape(args.input_shape) if args.input_shape else None)
    inputs = loaded.example_inputs()
    macs, params = cpd.count(loaded.model, inputs)
    timers = {"torch": lambda b, **t: measure_latency(loaded.model, inputs, batch_size=b,
                                                      threads=args.threads, **t)}
    if args.onnx:
        from cpd.report.onnx_export import export_onnx, time_onnx

        path = export_onnx(loaded.model, inputs, tmp / f"model{index}.onnx")
        timers["onnxruntime"] = lambda b, **t: time_onnx(path, inputs, batch_size=b, threads=args.threads, **t)
    info = {"model": model, "input_shape": list(loaded.inputs.shape), "macs": macs, "params": params}
    return info, timers


def run(args: argparse.Namespace) -> int:
    from cpd.cli.bench_rounds import time_rounds

    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    rounds = args.rounds if args.rounds is not None else (1 if len(args.models) == 1 else 4)
    with tempfile.TemporaryDirectory(prefix="cpd-bench-") as tmp:
        # Every model is built (and exported) before any timing, so that the rounds
        # alternate between timings only.
        built = [_timers(args, m, Path(tmp), i) for i, m in enumerate(args.models)]
        backends = ["torch"] + (["onnxruntime"] if args.onnx else [])
        results, speedups = time_rounds([t for _, t in built], backends, args.batch_sizes, rounds=rounds,
                                        warmup=args.warmup, repeats=args.repeats,
                                        max_seconds=args.max_seconds)
    entries = [{**info, "results": [r.to_dict() for r in res], "speedup": sp}
               for (info, _), res, sp in zip(built, results, speedups)]
    if args.json:
        if len(entries) == 1:  # the single-model form predates comparisons: kept as it was
            print_json({k: v for k, v in entries[0].items() if k != "speedup"})
        else:
            print_json({"baseline": args.models[0], "rounds": rounds, "models": entries})
        return 0
    _print(entries, rounds)
    return 0


def _print(entries: list[dict[str, Any]], rounds: int) -> None:
    from cpd.io.card import human

    several = len(entries) > 1
    out = console()
    for e in entries:
        out.print(escape(f"{e['model']}: {human(e['macs'])} MACs per {tuple(e['input_shape'])} input, "
                         f"{human(e['params'])} params"))
    table = Table()
    cols = (["model"] if several else []) + ["backend", "batch", "median ms", "p90 ms", "images/s"]
    cols += (["speed-up"] if several else []) + ["runs", "threads"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "backend") else "right")
    rows = sorted(((r["backend"], r["batch_size"], i, r, e["speedup"][j])
                   for i, e in enumerate(entries) for j, r in enumerate(e["results"])),
                  key=lambda t: (t[0] != "torch", t[0], t[1], t[2]))
    for backend, batch, i, r, speedup in rows:
        cells = [escape(entries[i]["model"])] if several else []
        cells += [backend, str(batch), f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['throughput']:.1f}"]
        if several:
            cells.append("baseline" if i == 0 else (f"{speedup:.2f}x" if speedup else "-"))
        table.add_row(*cells, str(r["runs"]), str(r["threads"]))
    out.print(table)
    if several:
        out.print(f"speed-up: median over {rounds} interleaved rounds of the first model's median "
                  "over this one's, same backend and batch size")
