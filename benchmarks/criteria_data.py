"""Data for the criteria benchmark: CamVid scene patches held in memory.

``cpd.data.build_dataset("camvid_patches", ...)`` decodes frames lazily and augments
per sample in Python (about 2 ms a patch), which on a shared 2-core machine costs as
much as the training step itself. Here every patch is decoded once, without the
dataset's augmentation, into one float tensor; training adds a cheap random flip and
a random 4-pixel translation per sample instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from cpd.data import build_dataset

__all__ = ["PatchTensors", "load_patches"]


def load_patches(root: str | Path, split: str, patch_size: int = 32,
                 max_frames: int | None = None) -> tuple[Tensor, Tensor]:
    """All patches of ``split`` as ``(N, 3, p, p)`` normalised float32 and ``(N,)`` int64."""
    ds = build_dataset("camvid_patches", root, split, patch_size=patch_size,
                       max_frames=max_frames, augment=False)
    if len(ds) == 0:
        raise ValueError(f"camvid_patches {split!r} with max_frames={max_frames} has no patches")
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    return images, ds.targets.clone()


class PatchTensors(Dataset[tuple[Tensor, int]]):
    """``(image, label)`` pairs from in-memory tensors; ``augment`` adds flip + shift."""

    def __init__(self, images: Tensor, labels: Tensor, augment: bool = False, pad: int = 4) -> None:
        self.images, self.labels, self.augment, self.pad = images, labels, augment, pad

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        if self.augment:
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            if self.pad:
                p = self.pad
                h, w = x.shape[-2:]
                padded = torch.nn.functional.pad(x, (p, p, p, p), mode="replicate")
                dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
                x = padded[:, dy : dy + h, dx : dx + w]
        return x, int(self.labels[i])
