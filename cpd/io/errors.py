"""Exceptions of :mod:`cpd.io`, each with a one-line message a CLI can print as is.

Two families, which the CLI maps to two exit statuses:

* :class:`CpdInputError` and its subclasses derive from :class:`ValueError`: the
  input the user named is wrong (a bad model string, a folder that is not a cpd
  folder, weights that do not fit the plan). Exit status 2.
* :class:`MissingDependencyError` derives from :class:`ImportError`: the input is
  fine but an optional package it needs (timm, torchvision, transformers) is not
  installed. Exit status 1.
"""

from __future__ import annotations

__all__ = [
    "CpdInputError",
    "FolderError",
    "MissingDependencyError",
    "ModelSourceError",
    "WeightsMismatchError",
    "require",
]


class CpdInputError(ValueError):
    """Something the user named (model string, folder, shape) cannot be used."""


class ModelSourceError(CpdInputError):
    """A model string is malformed, names an unknown scheme, or cannot be built."""


class FolderError(CpdInputError):
    """A cpd folder is missing, incomplete, corrupt or of an unknown format."""


class WeightsMismatchError(FolderError):
    """``model.safetensors`` does not fit the architecture the plan produces."""


class MissingDependencyError(ImportError):
    """An optional package needed by a model source is not installed."""


def require(package: str, what: str, pip_name: str | None = None) -> object:
    """Import ``package`` or raise :class:`MissingDependencyError` naming ``what`` needs it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:
        # Only a missing *package* is reported as such; a broken install (an import
        # error inside the package) keeps its own message, which says what is wrong.
        if getattr(e, "name", None) not in (package, None):
            raise MissingDependencyError(f"{what} needs {package}, whose import failed: {e}") from e
        raise MissingDependencyError(
            f"{what} needs the {package} package, which is not installed (pip install {pip_name or package})"
        ) from e
