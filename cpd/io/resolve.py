"""``open_model``: what the CLI's MODEL argument means, a model string or a cpd folder."""

from __future__ import annotations

from pathlib import Path

from cpd.io.errors import FolderError
from cpd.io.folder_format import is_cpd_folder, read_meta
from cpd.io.load import load_folder
from cpd.io.sources import LoadedModel, build_source

__all__ = ["open_model"]


def open_model(text: str, *, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """A model from a model string *or* a cpd folder path (what the CLI accepts).

    Args:
        text: ``hf:vit``, ``py:pkg.mod:factory``, ``./pruned-folder``...
        input_shape: replaces the source's or folder's example input shape.

    Raises:
        ModelSourceError / FolderError: as :func:`build_source` and :func:`load_folder`.
    """
    path = Path(text).expanduser()
    if _is_dir_or_file(path) and is_cpd_folder(path):
        return load_folder(path, input_shape=input_shape)
    if _is_dir_or_file(path) and (path.is_dir() or ":" not in text):
        read_meta(path)  # raises the right "not a cpd folder" message
    if any(c in text for c in "/\\") and ":" not in text.split("/")[0].split("\\")[0]:
        raise FolderError(f"no such cpd folder: {text}")
    loaded = build_source(text)
    loaded.inputs = loaded.inputs.with_shape(input_shape)
    return loaded


def _is_dir_or_file(path: Path) -> bool:
    """Like ``path.exists()``, but False for strings no file system accepts (a long
    model string with options is not a path)."""
    try:
        return path.exists()
    except OSError:
        return False
