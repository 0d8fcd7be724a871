"""Data of the CamVid benchmark, decoded once and held in memory.

Segmentation: every frame (240x180 in the shared copy) is resized once to ``size``
(default 90x120, H x W; bilinear with antialiasing for images, nearest for labels).
Training samples are random ``crop`` windows (72x96 in the benchmark) with a random horizontal
flip, cut from those frames: cheap tensor slicing instead of the per-sample kornia
augmentation of ``cpd.data.CamVid``, which on two shared cores costs as much as a
training step. Evaluation uses the whole resized test frames.

Classification: ``criteria_data`` (32x32 CamVid scene patches, random flip + shift).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from cpd.data import build_dataset
from criteria_data import PatchTensors, load_patches

__all__ = ["FrameTensors", "load_frames", "PatchTensors", "load_patches"]


def load_frames(root: str | Path, split: str, size: tuple[int, int] = (90, 120),
                max_items: int | None = None) -> tuple[Tensor, Tensor]:
    """All frames of ``split`` as ``(N, 3, H, W)`` normalised float32 and ``(N, H, W)`` int64 labels."""
    ds = build_dataset("camvid", root, split, augment=False, max_items=max_items)
    images, labels = [], []
    for i in range(len(ds)):
        x, y = ds[i]
        images.append(F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0])
        labels.append(F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long())
    if not images:
        raise ValueError(f"camvid {split!r} under {root} has no frames")
    return torch.stack(images), torch.stack(labels)


class FrameTensors(Dataset[tuple[Tensor, Tensor]]):
    """``(image (3, h, w), labels (h, w))`` from in-memory frames.

    Args:
        images: ``(N, 3, H, W)`` normalised float.
        labels: ``(N, H, W)`` int64.
        crop: ``(h, w)`` random training window with a random flip; ``None`` returns
            whole frames unchanged (evaluation).
    """

    def __init__(self, images: Tensor, labels: Tensor, crop: tuple[int, int] | None = None) -> None:
        if crop is not None and (crop[0] > images.shape[-2] or crop[1] > images.shape[-1]):
            raise ValueError(f"crop {crop} is larger than the frames {tuple(images.shape[-2:])}")
        self.images, self.labels, self.crop = images, labels, crop

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.images[i], self.labels[i]
        if self.crop is None:
            return x, y
        h, w = self.crop
        top = int(torch.randint(0, x.shape[-2] - h + 1, ()))
        left = int(torch.randint(0, x.shape[-1] - w + 1, ()))
        x, y = x[:, top:top + h, left:left + w], y[top:top + h, left:left + w]
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()
