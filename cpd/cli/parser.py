"""argparse pieces shared by every subcommand: one-line errors, help formatting.

Every error the CLI prints is exactly one line, ``cpd: error: MESSAGE``, on
stderr. argparse's own errors normally print the usage block first; the parser
here prints only the line, plus a pointer to ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CliError", "OneLineParser", "HelpFormatter", "error_line"]

#: The command line cannot be used as given: bad flag, model string, path, shape.
EXIT_USAGE = 2
#: The command was valid but running it failed (model error, ONNX mismatch...).
EXIT_FAILURE = 1
_MAX_MESSAGE = 600  # characters; longer messages (some torch errors) are cut


class CliError(Exception):
    """An error with a message meant for the user and an exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def error_line(message: str) -> str:
    """``cpd: error: MESSAGE`` with MESSAGE folded onto one line and capped in length."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return f"cpd: error: {text}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and example epilogs; shows defaults."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = "%(default)" in text or "default:" in text
        empty = action.default in (None, False, argparse.SUPPRESS) or action.default == []
        if not shown and not empty and action.option_strings:
            text += " (default: %(default)s)"
        return text


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(error_line(f"{message} (see '{self.prog} --help')"), file=sys.stderr)
        sys.exit(EXIT_USAGE)
