"""``cpd bench``: latency and throughput per batch size, PyTorch and ONNX Runtime."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from cpd.cli.common import (
    add_model_arguments,
    console,
    csv_ints,
    open_cli_model,
    positive_int,
    print_json,
)
from cpd.cli.parser import HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd bench hf:vit --batch-sizes 1,8
  cpd bench ./vit-pruned --onnx --threads 4
  cpd bench py:mymodels:make_net --input-shape 1,3,32,32 --repeats 50 --json

Protocol: --warmup untimed runs, then up to --repeats timed runs (stopping early
once --max-seconds have passed, after at least 5); median and 90th percentile of
the per-run wall time, and throughput = batch size / median. With --onnx the
model is exported to a temporary file, checked against PyTorch, and timed with
onnxruntime using the same number of threads.
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="measure latency (median, p90) and throughput",
        description="Time the forward pass at each batch size, in PyTorch and optionally in "
                    "ONNX Runtime.")
    add_model_arguments(p)
    p.add_argument("--batch-sizes", type=csv_ints, default=[1, 8], metavar="B1,B2",
                   help="batch sizes to time, comma-separated (default: 1,8)")
    p.add_argument("--onnx", action="store_true", help="also time the ONNX export with onnxruntime")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="intra-op threads for PyTorch and onnxruntime (default: torch's setting)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed runs first")
    p.add_argument("--repeats", type=positive_int, default=20, metavar="N", help="most timed runs")
    p.add_argument("--max-seconds", type=float, default=30.0, metavar="S",
                   help="time budget for the timed runs of one batch size")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import cpd
    from cpd.report.latency import measure_latency

    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    loaded = open_cli_model(args)
    inputs = loaded.example_inputs()
    macs, params = cpd.count(loaded.model, inputs)
    timing = dict(warmup=args.warmup, repeats=args.repeats, max_seconds=args.max_seconds)
    results = [measure_latency(loaded.model, inputs, batch_size=b, threads=args.threads, **timing)
               for b in args.batch_sizes]
    if args.onnx:
        from cpd.report.onnx_export import export_onnx, time_onnx

        with tempfile.TemporaryDirectory(prefix="cpd-bench-") as tmp:
            path = export_onnx(loaded.model, inputs, Path(tmp) / "model.onnx")
            results += [time_onnx(path, inputs, batch_size=b, threads=args.threads, **timing)
                        for b in args.batch_sizes]
    if args.json:
        print_json({"model": args.model, "input_shape": list(loaded.inputs.shape), "macs": macs,
                    "params": params, "results": [r.to_dict() for r in results]})
        return 0
    _print(args.model, loaded.inputs.shape, macs, params, results)
    return 0


def _print(model: str, shape: tuple[int, ...], macs: int, params: int, results: list[Any]) -> None:
    from cpd.io.card import human

    title = escape(f"{model}: {human(macs)} MACs per {tuple(shape)} input, {human(params)} params")
    table = Table()
    for col in ("backend", "batch", "median ms", "p90 ms", "images/s", "runs", "threads"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in results:
        table.add_row(r.backend, str(r.batch_size), f"{r.median_ms:.3f}", f"{r.p90_ms:.3f}",
                      f"{r.throughput:.1f}", str(r.runs), str(r.threads))
    out = console()
    out.print(title)
    out.print(table)
