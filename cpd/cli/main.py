"""The ``cpd`` command: ``cpd {demo,run,comb,prune,bench,export,eval,report} ...``.

Exit status: 0 on success; 2 when the command line cannot be used as given (bad
flag or value, model string, path, input shape, a folder that does not load);
1 when a valid command fails while running (the model's forward raises, the ONNX
check fails, an optional package is missing). Errors are one line,
``cpd: error: ...``, on stderr; ``--debug`` adds the traceback and shows the
warnings that are otherwise silenced.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence

from cpd.cli.parser import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    HelpFormatter,
    OneLineParser,
    error_line,
)

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  cpd demo
  cpd run --example > cpd-run.yaml            (every key, commented: edit it, then)
  cpd run cpd-run.yaml --set prune.macs=0.4
  cpd comb hf:vit
  cpd prune "hf:vit?image_size=64&num_labels=10" --ratio 0.3 --out vit-pruned
  cpd bench vit-pruned --batch-sizes 1,8 --onnx
  cpd bench "hf:vit?image_size=64&num_labels=10" vit-pruned --onnx   (compare, speed-up)
  cpd export vit-pruned --out vit-pruned.onnx
  cpd eval cpd-digits/model --data "digits?size=16"
  cpd report cpd-digits

MODEL is a model string or a folder saved by 'cpd prune --out':
  hf:MODEL_TYPE[?key=value&...]        transformers config (random weights), e.g. hf:vit?image_size=64
  hf:/path/to/save_pretrained_dir      a local transformers folder
  timm:NAME[?key=value&...]            needs timm
  torchvision:NAME[?key=value&...]     needs torchvision
  py:package.module:factory[?k=v&...]  your own factory: returns a module or (module, input_shape)
Option values are JSON when they parse (64, 0.1, true, [1,2]) and strings otherwise.

'cpd COMMAND --help' describes each command.
"""


def _subcommands() -> list[object]:
    from cpd.cli import bench, comb, demo, evaluate, export, prune, report, run

    return [demo, run, comb, prune, bench, export, evaluate, report]


def build_parser() -> argparse.ArgumentParser:
    """The full parser (subcommand modules add their own parsers)."""
    parser = OneLineParser(
        prog="cpd", formatter_class=HelpFormatter, epilog=EPILOG,
        description="Comb, Prune, Distill: structured pruning for PyTorch vision models.")
    parser.add_argument("--debug", action="store_true",
                        help="on error, print the traceback; show warnings")
    # Also accepted after the subcommand; SUPPRESS keeps it from resetting the top-level flag.
    parent = OneLineParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on error, print the traceback; show warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in _subcommands():
        module.register(sub, parent)  # type: ignore[attr-defined]
    return parser


@contextlib.contextmanager
def _quiet(debug: bool) -> Iterator[None]:
    """Silence warnings (tracer, deprecation, transformers) unless debugging.

    The CLI's contract is one line on error; library warnings on stderr would
    bury it, and on success they are noise the user cannot act on.
    """
    if debug:
        yield
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _exit_code(e: BaseException) -> int:
    if isinstance(e, CliError):
        return e.code
    # ValueError covers cpd.io's input errors, bad pruning targets, unknown module
    # names; FileNotFoundError a missing dataset root. ImportError is a missing
    # optional package: the command was fine, the environment is not.
    if isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError)):
        return EXIT_USAGE
    return EXIT_FAILURE


def _message(e: BaseException, code: int) -> str:
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if code == EXIT_FAILURE and not isinstance(e, (CliError, ImportError)):
        # A failure deep in a model means more with its type (RuntimeError, ...).
        name = type(e).__name__
        text = f"{text if name in text[:80] else f'{name}: {text}'} (--debug shows the traceback)"
    return text or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (also for ``--help`` and usage errors)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        with _quiet(debug):
            args = build_parser().parse_args(args_list)
            return int(args.run(args))
    except SystemExit as e:  # argparse: --help (0) and usage errors (2, already printed)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print(error_line("interrupted"), file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI reports every failure as one line
        code = _exit_code(e)
        if debug:
            traceback.print_exc()
        print(error_line(_message(e, code)), file=sys.stderr)
        return code
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
