"""A classification dataset derived from CamVid: scene patches labelled by majority class.

It gives the project a second *real* classification dataset besides digits (natural
RGB images, 11 classes) without any download beyond CamVid itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from cpd.data.augment import JointAugment, resolve_augment
from cpd.data.camvid import CAMVID_CLASSES, camvid_pairs
from cpd.data.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_label,
    load_rgb,
    normalize,
    to_float,
)

__all__ = ["CamVidPatches"]


class CamVidPatches(Dataset[tuple[Tensor, int]]):
    """Square patches cut on a regular grid from CamVid frames, as ``(image, class)``.

    A patch's label is the most frequent class among its labelled pixels (ties go to the
    lower class index); patches whose fraction of ignore pixels exceeds ``max_ignore``
    are skipped. Frames are visited in list order and patches in raster order, so the
    dataset is identical on every run. Frames are decoded on first use and kept in
    memory as uint8 (about 130 KB per frame).

    Args:
        root: the CamVid root (SegNet layout, see :class:`~cpd.data.CamVid`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        patch_size: side of the square patch in pixels.
        stride: grid step; ``None`` for non-overlapping patches (``patch_size``).
        max_ignore: largest tolerated fraction of ignore pixels in a patch.
        max_frames: use only the first ``max_frames`` frames of the split.
        augment: ``None`` = light random resized crop + flip for ``train`` only.
    """

    num_classes = len(CAMVID_CLASSES)
    task = "classification"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        patch_size: int = 32,
        stride: int | None = None,
        max_ignore: float = 0.25,
        max_frames: int | None = None,
        augment: bool | JointAugment | None = None,
    ) -> None:
        if patch_size < 1 or (stride is not None and stride < 1):
            raise ValueError(f"camvid_patches: patch_size and stride must be positive, got {patch_size}, {stride}")
        if not 0.0 <= max_ignore < 1.0:
            raise ValueError(f"camvid_patches: max_ignore must be in [0, 1), got {max_ignore}")
        pairs = camvid_pairs(root, split)
        self.frames = [image for image, _ in (pairs if max_frames is None else pairs[:max_frames])]
        self.label_files = [label for _, label in pairs[: len(self.frames)]]
        self.patch_size = int(patch_size)
        self.stride = int(stride or patch_size)
        self.classes = CAMVID_CLASSES
        self.augment = resolve_augment(augment, split, lambda: JointAugment(patch_size, (0.7, 1.0)))
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        index: list[Tensor] = []
        targets: list[Tensor] = []
        for frame, path in enumerate(self.label_files):
            where, label = self._grid_labels(load_label(path), max_ignore)
            index.append(torch.cat([torch.full((len(label), 1), frame), where], dim=1))
            targets.append(label)
        self.index = torch.cat(index) if index else torch.zeros(0, 3, dtype=torch.long)  # (N, 3): frame, top, left
        self.targets = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
        self._cache: dict[int, Tensor] = {}

    def _grid_labels(self, labels: Tensor, max_ignore: float) -> tuple[Tensor, Tensor]:
        """Top-left corners ``(K, 2)`` and majority labels ``(K,)`` of the kept patches."""
        c = self.num_classes
        # Anything outside 0..10 counts as unlabelled, like the ignore label itself.
        labels = torch.where((labels >= 0) & (labels < c), labels, torch.full_like(labels, c))
        p, s = self.patch_size, self.stride
        grid = labels.unfold(0, p, s).unfold(1, p, s)  # (nh, nw, p, p)
        nh, nw = grid.shape[:2]
        flat = grid.reshape(nh * nw, p * p)
        offsets = torch.arange(nh * nw)[:, None] * (c + 1)
        counts = torch.bincount((flat + offsets).reshape(-1), minlength=nh * nw * (c + 1))
        counts = counts.reshape(nh * nw, c + 1)
        keep = torch.nonzero(counts[:, c] <= max_ignore * p * p).flatten()
        majority = counts[keep, :c].argmax(dim=1)  # first maximum on ties
        corners = torch.stack([keep // nw * s, keep % nw * s], dim=1)
        return corners, majority

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def _frame(self, frame: int) -> Tensor:
        if frame not in self._cache:
            self._cache[frame] = load_rgb(self.frames[frame])
        return self._cache[frame]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        frame, top, left = (int(v) for v in self.index[index])
        p = self.patch_size
        image = to_float(self._frame(frame)[:, top : top + p, left : left + p])
        if self.augment is not None:
            image, _ = self.augment(image)
        return normalize(image, self.mean, self.std), int(self.targets[index])
