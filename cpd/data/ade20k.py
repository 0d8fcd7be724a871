"""ADE20K scene parsing (the 150-class ADEChallengeData2016 release)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from cpd.data.augment import JointAugment, resolve_augment
from cpd.data.layout import require_dir, require_root, split_alias
from cpd.data.paired import PairedSegmentation

__all__ = ["ADE20K", "ADE20K_IGNORE_INDEX", "ade20k_label_map"]

ADE20K_IGNORE_INDEX = 255
LAYOUT = (
    "ADEChallengeData2016/images/{training,validation}/*.jpg and "
    "ADEChallengeData2016/annotations/{training,validation}/*.png"
)
_SPLITS = {"train": "training", "val": "validation", "test": "validation"}


def ade20k_label_map(raw: Tensor) -> Tensor:
    """Raw annotation values to training labels: 0 ("other") -> 255, k in 1..150 -> k - 1."""
    labels = raw.long() - 1
    return torch.where((labels >= 0) & (labels < 150), labels, torch.full_like(labels, ADE20K_IGNORE_INDEX))


class ADE20K(PairedSegmentation):
    """ADE20K as ``(image (3, H, W), labels (H, W))``; 150 classes, ignore 255.

    Images have different sizes, so evaluation (no augmentation) needs batch size 1
    or a collate that pads; training crops everything to ``crop_size``.

    Args:
        root: ``ADEChallengeData2016`` itself or the folder that contains it.
        split: ``"train"`` (training) or ``"val"`` (validation; ``"test"`` is the same).
        augment: ``None`` = random resized crop + flip for ``train`` only.
        crop_size: training crop ``(H, W)``.
        scale: crop area range for the training augmentation.
        max_items: keep only the first ``max_items`` images (sorted by name).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        augment: bool | JointAugment | None = None,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[float, float] = (0.25, 1.0),
        max_items: int | None = None,
    ) -> None:
        folder = split_alias(split, "ade20k", _SPLITS)
        base = require_root(root, "ade20k", LAYOUT)
        if (base / "ADEChallengeData2016").is_dir():
            base = base / "ADEChallengeData2016"
        images = require_dir(base / "images" / folder, "ade20k", LAYOUT)
        annotations = require_dir(base / "annotations" / folder, "ade20k", LAYOUT)
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not files:
            raise FileNotFoundError(f"ade20k: no .jpg images in {images}; the root must be laid out as {LAYOUT}")
        if max_items is not None:
            files = files[:max_items]
        pairs = []
        for image in files:
            label = annotations / f"{image.stem}.png"
            if not label.is_file():
                raise FileNotFoundError(f"ade20k: annotation {label} for image {image.name} is missing; expected {LAYOUT}")
            pairs.append((image, label))
        super().__init__(
            pairs,
            num_classes=150,
            ignore_index=ADE20K_IGNORE_INDEX,
            label_map=ade20k_label_map,
            augment=resolve_augment(augment, split, lambda: JointAugment(crop_size, scale)),
        )
