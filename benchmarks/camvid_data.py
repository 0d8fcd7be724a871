"""Data of the CamVid benchmark, decoded once and held in memory.

Segmentation: every frame (240x180 in the shared copy) is resized once to ``size``
(default 90x120, H x W; bilinear with antialiasing for images, nearest for labels).
Training samples are random ``crop`` windows (72x96 in the benchmark) with a random horizontal
flip, cut from those frames: cheap tensor slicing instead of the per-sample kornia
augmentation of ``cpd.data.CamVid``, which on two shared cores costs as much as a
training step. With ``scale=(lo, hi)`` the window side is a random multiple of the crop in
that range, resized back to the crop (scale jitter: below 1 zooms in, above 1 out).
Evaluation uses the whole resized test frames.

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
        scale: ``(lo, hi)``: the window is ``crop`` times a uniform factor from this range
            (capped where it would leave the frame) and resized to ``crop``: bilinear for the
            image, nearest for the labels, so no label value is invented. ``None``: factor 1.
    """

    def __init__(self, images: Tensor, labels: Tensor, crop: tuple[int, int] | None = None,
                 scale: tuple[float, float] | None = None) -> None:
        if crop is not None and (crop[0] > images.shape[-2] or crop[1] > images.shape[-1]):
            raise ValueError(f"crop {crop} is larger than the frames {tuple(images.shape[-2:])}")
        if scale is not None and not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        self.images, self.labels, self.crop, self.scale = images, labels, crop, scale

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.images[i], self.labels[i]
        if self.crop is None:
            return x, y
        ch, cw = self.crop
        h, w = ch, cw
        if self.scale is not None:
            # one factor for both sides keeps the aspect ratio; capped so the window fits the frame
            f = self.scale[0] + (self.scale[1] - self.scale[0]) * float(torch.rand(()))
            f = min(f, x.shape[-2] / ch, x.shape[-1] / cw)
            h, w = max(1, round(ch * f)), max(1, round(cw * f))
        top = int(torch.randint(0, x.shape[-2] - h + 1, ()))
        left = int(torch.randint(0, x.shape[-1] - w + 1, ()))
        x, y = x[:, top:top + h, left:left + w], y[top:top + h, left:left + w]
        if (h, w) != (ch, cw):
            x = F.interpolate(x[None], size=(ch, cw), mode="bilinear", align_corners=False)[0]
            y = F.interpolate(y[None, None].float(), size=(ch, cw), mode="nearest")[0, 0].long()
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()
