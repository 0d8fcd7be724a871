"""Reading images and label maps from disk, and normalising image tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_rgb",
    "load_label",
    "to_float",
    "normalize",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def load_rgb(path: str | Path) -> Tensor:
    """Read an image file as a ``(3, H, W)`` uint8 tensor (grey and RGBA become RGB)."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_label(path: str | Path) -> Tensor:
    """Read a single-channel label PNG as an ``(H, W)`` int64 tensor of raw values."""
    with Image.open(path) as img:
        if img.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"label map {path} has mode {img.mode}; expected one label value per pixel "
                "(a grey or palette PNG)"
            )
        # np.array of a palette image gives the indices, not the colours: what we want.
        array = np.array(img, dtype=np.int64)
    return torch.from_numpy(array)


def to_float(image: Tensor) -> Tensor:
    """uint8 ``(..., 3, H, W)`` in [0, 255] to float32 in [0, 1]."""
    return image.to(torch.float32).div_(255.0) if image.dtype == torch.uint8 else image.float()


def normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(image - mean) / std`` per channel; ``image`` is float ``(C, H, W)`` or ``(B, C, H, W)``."""
    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return (image - m) / s
