"""Checks that a dataset root has the expected on-disk layout, with actionable errors.

Every message is one line saying what was expected where and what to do about it, so
that a wrong ``--data-root`` is fixed in one try instead of surfacing as a bare
``FileNotFoundError`` deep inside a DataLoader worker.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["require_root", "require_dir", "require_file", "split_alias"]


def require_root(root: str | Path | None, dataset: str, layout: str) -> Path:
    """Return ``root`` as a Path if it is an existing directory.

    Args:
        root: the user-given root.
        dataset: dataset name, for the message.
        layout: short description of the expected layout, for the message.

    Raises:
        FileNotFoundError: if ``root`` is None, missing or not a directory.
    """
    if root is None:
        raise FileNotFoundError(f"{dataset}: no root folder given; pass the folder laid out as {layout}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{dataset}: root folder {path} does not exist; pass the folder laid out as {layout}"
        )
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: root {path} is a file, not a folder; pass the folder laid out as {layout}")
    return path


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it is a directory, else raise naming it and the expected layout."""
    if not path.is_dir():
        raise FileNotFoundError(
            f"{dataset}: expected folder {path} is missing; the root must be laid out as {layout}"
        )
    return path


def require_file(path: Path, dataset: str, layout: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and the expected layout."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{dataset}: expected file {path} is missing; the root must be laid out as {layout}"
        )
    return path


def split_alias(split: str, dataset: str, aliases: dict[str, str]) -> str:
    """Map a user split name (``train``/``val``/``test``) to the dataset's own name.

    Raises:
        ValueError: for a split the dataset does not have.
    """
    key = split.strip().lower()
    if key not in aliases:
        raise ValueError(f"{dataset}: unknown split {split!r}; choose one of: {', '.join(aliases)}")
    return aliases[key]
