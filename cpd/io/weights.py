"""Writing and reading a model's weights as safetensors, with one-line errors.

safetensors stores plain tensors and a JSON header: reading it can never run
code, unlike a pickled ``torch.save`` file. Tensors shared between modules (tied
embeddings, a layer used twice) are written once by
``safetensors.torch.save_model`` and re-tied by ``load_model``.

Loading is strict: every tensor of ``model.state_dict()`` must be in the file
with the same shape, and nothing else may be, otherwise the model would run with
some random weights left in it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import safetensors.torch
from safetensors import safe_open
from torch import nn

from cpd.io.errors import FolderError, WeightsMismatchError

__all__ = ["file_sha256", "load_weights", "save_weights"]

_SHOW = 3  # names quoted in a mismatch message


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model.state_dict()`` to ``path`` (shared tensors once)."""
    safetensors.torch.save_model(model, str(path), metadata={"format": "pt"})


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _names(names: list[str]) -> str:
    extra = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + extra


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError is not importable by a stable name
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FolderError(f"{path} is corrupt or not a safetensors file ({first})") from e


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load ``path`` into ``model`` in place, strictly.

    Raises:
        FolderError: the file is missing, truncated or not safetensors.
        WeightsMismatchError: a tensor is missing, unexpected, or of another shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FolderError(f"missing weights file {path}")
    shapes = _file_shapes(path)
    own = model.state_dict()
    wrong = [f"{k} {list(shapes[k])} vs {list(v.shape)}" for k, v in own.items()
             if k in shapes and tuple(v.shape) != shapes[k]]
    if wrong:
        raise WeightsMismatchError(f"weights in {path} do not match the model the plan builds: "
                                   f"shape of {_names(wrong)} (file vs model)")
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except Exception as e:  # noqa: BLE001 - data past a valid header can still be bad
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FolderError(f"cannot read {path} ({first})") from e
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_names(sorted(missing))}")
        if unexpected:
            parts.append(f"unexpected {_names(sorted(unexpected))}")
        raise WeightsMismatchError(f"weights in {path} do not match the model the plan builds: "
                                   + "; ".join(parts))
