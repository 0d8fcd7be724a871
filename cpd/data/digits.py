"""scikit-learn's handwritten digits (8x8 grey, 10 classes): a tiny real dataset.

It ships inside scikit-learn, so it needs no download and no root folder; that is why
it drives the embedded demo and the quick tests. Everything is decoded, resized and
normalised once at construction, so ``__getitem__`` is only an index.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from cpd.data.layout import split_alias

__all__ = ["Digits", "DIGITS_MEAN", "DIGITS_STD"]

# Mean and std of all 1797 images scaled to [0, 1]; fixed so train and val agree.
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images ``(N, 8, 8)`` float32 in [0, 1] and labels ``(N,)`` int64."""
    # Importing sklearn.datasets costs ~2 s (it pulls in scipy); the data is one small CSV
    # in the package, which find_spec locates without importing anything.
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        pixels, target = table[:, :-1], table[:, -1]
    else:  # an unusual sklearn install: take the slow, official route
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = bunch.data, bunch.target
    images = pixels.astype(np.float32).reshape(-1, 8, 8) / 16.0
    return images, target.astype(np.int64)


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices; each class contributes ``round(n * val_fraction)`` to val."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class Digits(Dataset[tuple[Tensor, int]]):
    """Handwritten digits as ``(image (channels, size, size) float, label int)``.

    Args:
        split: ``"train"`` or ``"val"`` (``"test"`` is the same as ``"val"``).
        size: output side length; ``None`` keeps the native 8, e.g. 32 upsamples
            bilinearly so that a model with several stride-2 stages still works.
        channels: 1 (grey) or 3 (the grey plane repeated, for RGB models).
        val_fraction: fraction of the 1797 images held out for ``val``.
        seed: seed of the split; the split is stratified by class and deterministic.
    """

    num_classes = 10
    task = "classification"

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        channels: int = 1,
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        split = split_alias(split, "digits", {"train": "train", "val": "val", "test": "val"})
        if channels not in (1, 3):
            raise ValueError(f"digits: channels must be 1 or 3, got {channels}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"digits: val_fraction must be in (0, 1), got {val_fraction}")
        images, labels = _load()
        train_idx, val_idx = _stratified_split(labels, val_fraction, seed)
        idx = train_idx if split == "train" else val_idx
        x = torch.from_numpy(images[idx])[:, None]  # (N, 1, 8, 8)
        if size is not None and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - DIGITS_MEAN) / DIGITS_STD
        if channels == 3:
            x = x.expand(-1, 3, -1, -1)
        self.images = x.contiguous()
        self.targets = torch.from_numpy(labels[idx])
        self.split = split

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.targets[index])
