"""The layout of a folder saved by cpd, and reading its ``cpd.json``.

A folder holds::

    model.safetensors   the pruned weights (no pickle)
    plan.json           the plan of the last pruning (cpd.plan.Plan JSON)
    base_plan_0.json    plans of earlier prunings, when a pruned model was pruned again
    cpd.json            how to rebuild it (see below)
    README.md           a model card with the numbers

``cpd.json`` (format version 1)::

    {
      "format": "cpd-pruned-model",
      "format_version": 1,
      "cpd_version": "0.1.0",
      "source": "hf:vit?image_size=64",          # builds the original architecture
      "input": {"shape": [1, 3, 64, 64], "form": "kwarg", "name": "pixel_values"},
      "plans": ["plan.json"],                      # applied in order to the original
      "weights": "model.safetensors",
      "weights_sha256": "…",                       # detects a corrupt or swapped file
      "counts": {"macs": [before, after], "params": [before, after]},   # before may be null
      "metrics": {"top1": 0.71}                     # optional
    }

Loading rebuilds ``source`` (with fresh weights), applies each plan, then loads
the weights: the folder itself contains only data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cpd.io.errors import FolderError

__all__ = ["CARD_FILE", "FORMAT", "FORMAT_VERSION", "META_FILE", "PLAN_FILE", "WEIGHTS_FILE",
           "base_plan_file", "cpd_version", "is_cpd_folder", "read_meta", "read_plan_json"]

FORMAT = "cpd-pruned-model"
FORMAT_VERSION = 1
META_FILE = "cpd.json"
PLAN_FILE = "plan.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


def base_plan_file(i: int) -> str:
    """File name of the ``i``-th earlier plan of a model pruned more than once."""
    return f"base_plan_{i}.json"


def cpd_version() -> str:
    """The installed cpd's version (the package metadata, else ``cpd.__version__``)."""
    try:
        from importlib.metadata import version

        return version("cpd")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        import cpd

        return str(getattr(cpd, "__version__", "unknown"))


def is_cpd_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a ``cpd.json``."""
    p = Path(path)
    return p.is_dir() and (p / META_FILE).is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FolderError(f"{path.parent} is incomplete: {path.name} is missing") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise FolderError(f"{path} is not valid JSON ({what}): {e}") from e


def read_meta(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/cpd.json``.

    Raises:
        FolderError: not a folder, no ``cpd.json``, bad JSON, another format, a
            newer format version, or a required key missing.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FolderError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise FolderError(f"{folder} is a file, not a cpd folder")
    if not (folder / META_FILE).is_file():
        raise FolderError(f"{folder} is not a cpd folder (no {META_FILE}); a save_pretrained "
                          "folder loads with hf:PATH")
    meta = _read_json(folder / META_FILE, "the folder description")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FolderError(f"{folder / META_FILE} is not a cpd model description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FolderError(f"{folder} was written in format version {version!r} by cpd "
                          f"{meta.get('cpd_version', '?')}; this cpd reads version {FORMAT_VERSION} "
                          "(upgrade cpd)")
    missing = [k for k in ("source", "input", "plans", "weights") if k not in meta]
    if missing:
        raise FolderError(f"{folder / META_FILE} lacks {', '.join(missing)}")
    for name in [*meta["plans"], meta["weights"]]:
        # Files are named by the folder; refuse anything that would reach outside it.
        if not isinstance(name, str) or Path(name).name != name:
            raise FolderError(f"{folder / META_FILE} names a bad file {name!r}")
    return meta


def read_plan_json(folder: Path, name: str) -> Any:
    """The parsed JSON of one plan file of ``folder``."""
    return _read_json(folder / name, "a pruning plan")
