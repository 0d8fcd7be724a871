"""Helpers the subcommands share: the MODEL argument, value parsers, console output."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from cpd.io.sources import LoadedModel

__all__ = [
    "MODEL_HELP",
    "add_model_arguments",
    "console",
    "csv_ints",
    "csv_names",
    "fraction",
    "open_cli_model",
    "positive_int",
    "print_json",
]

MODEL_HELP = ("a model string (hf:MODEL_TYPE[?key=value&...], hf:/path/to/save_pretrained_dir, "
              "timm:NAME, torchvision:NAME, py:package.module:factory[?key=value&...]) "
              "or a folder saved by 'cpd prune --out'")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The positional MODEL and ``--input-shape``."""
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input-shape", metavar="B,C,H,W",
                   help="example input shape, e.g. 1,3,224,224 (default: from the model's config "
                        "or saved folder, else 1,3,224,224)")


def open_cli_model(args: argparse.Namespace) -> LoadedModel:
    """Build or load ``args.model`` with ``args.input_shape`` applied."""
    from cpd.io.resolve import open_model
    from cpd.io.spec import parse_shape

    shape = parse_shape(args.input_shape) if args.input_shape else None
    return open_model(args.model, input_shape=shape)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def csv_ints(text: str) -> list[int]:
    """argparse type: ``"1,8"`` -> ``[1, 8]`` (positive integers)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return [positive_int(p) for p in parts]


def csv_names(text: str) -> list[str]:
    """argparse type: ``"head,fc"`` -> ``["head", "fc"]``."""
    return [p.strip() for p in text.split(",") if p.strip()]


def console() -> Console:
    """Console on stdout; 120 columns when not a terminal so tables do not wrap in logs."""
    # soft_wrap: plain lines (paths, summaries) are never broken; tables still fit the width.
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False, soft_wrap=True)


def fraction(text: str) -> float:
    """argparse type: a float."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def print_json(obj: Any) -> None:
    """One JSON document on stdout (no rich markup, so it can be piped)."""
    import json

    sys.stdout.write(json.dumps(obj) + "\n")
