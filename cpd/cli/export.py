"""``cpd export``: write an ONNX file, verified against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape

from cpd.cli.common import add_model_arguments, console, open_cli_model, positive_int
from cpd.cli.parser import HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd export ./vit-pruned --out vit-pruned.onnx
  cpd export hf:vit --out vit.onnx --opset 18
  cpd export py:mymodels:make_net --input-shape 1,3,32,32 --out net.onnx --static-batch

The file is written to a temporary name, checked with onnx.checker and compared
with PyTorch on onnxruntime (numpy.allclose with --rtol/--atol) at the example
batch size and, unless --static-batch, at one more; only then does it replace
--out. Needs the optional packages onnx and onnxruntime (pip install "cpd[onnx]").
"""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    from cpd.report.onnx_export import DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RTOL

    p = sub.add_parser(
        "export", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="export to ONNX and check it against onnxruntime",
        description="Export a model or a pruned folder to ONNX (dynamic batch axis) and check the "
                    "file's outputs against PyTorch with onnxruntime.")
    add_model_arguments(p)
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, metavar="N", help="ONNX opset")
    p.add_argument("--static-batch", action="store_true",
                   help="fix the batch size to that of the example input")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, metavar="X",
                   help="relative tolerance of the check")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, metavar="X",
                   help="absolute tolerance of the check")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cpd.report.onnx_export import export_onnx

    loaded = open_cli_model(args)
    path = export_onnx(loaded.model, loaded.example_inputs(), args.out, opset=args.opset,
                       dynamic_batch=not args.static_batch, rtol=args.rtol, atol=args.atol)
    batch = loaded.inputs.shape[0]
    checked = f"{batch}" if args.static_batch else f"{batch} and {batch + 1}"
    console().print(escape(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB); outputs match "
                           f"PyTorch on onnxruntime at batch {checked} (rtol={args.rtol:g}, "
                           f"atol={args.atol:g})"))
    return 0
