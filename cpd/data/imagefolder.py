"""ImageNet-style classification folders: ``root/{split}/class_x/img.jpg``."""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from cpd.data.augment import JointAugment, resolve_augment
from cpd.data.image import IMAGENET_MEAN, IMAGENET_STD, load_rgb, normalize, to_float
from cpd.data.layout import require_dir, require_root

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "center_crop_resize"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
LAYOUT = "root/{split}/<class name>/<image>.jpg (or split=None for root/<class name>/<image>.jpg)"


def center_crop_resize(image: Tensor, size: int, crop_fraction: float = 0.875) -> Tensor:
    """The standard evaluation transform: resize the short side to ``size / crop_fraction``,
    then take the central ``size x size`` crop. ``image``: float ``(3, H, W)``."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    h, w = image.shape[-2:]
    short = round(size / crop_fraction)
    new_h, new_w = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[:, top : top + size, left : left + size]


class ImageFolder(Dataset[tuple[Tensor, int]]):
    """Images in one folder per class, as ``(image (3, size, size), class index)``.

    Classes are the sorted sub-folder names (``self.classes``); images are every file with
    an extension in :data:`IMAGE_EXTENSIONS`, sorted, so indices are reproducible.

    Args:
        root: the dataset folder.
        split: sub-folder of ``root`` to read (``"train"``, ``"val"``, ...); ``None``
            reads the class folders directly under ``root``.
        size: output side length.
        augment: ``None`` = random resized crop (scale 0.08-1) + flip for ``train`` only;
            otherwise resize + center crop.
    """

    task = "classification"

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        size: int = 224,
        augment: bool | JointAugment | None = None,
    ) -> None:
        base = require_root(root, "imagefolder", LAYOUT)
        folder = base if split is None else require_dir(base / split, "imagefolder", LAYOUT)
        self.classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"imagefolder: no class sub-folders in {folder}; expected {LAYOUT}")
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            self.samples.extend((p, label) for p in files)
        if not self.samples:
            raise FileNotFoundError(
                f"imagefolder: no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}; expected {LAYOUT}"
            )
        self.num_classes = len(self.classes)
        self.size = int(size)
        self.augment = resolve_augment(
            augment, split or "", lambda: JointAugment(size, (0.08, 1.0), ratio=(3 / 4, 4 / 3))
        )
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        image = to_float(load_rgb(path))
        if self.augment is not None:
            image, _ = self.augment(image)
        else:
            image = center_crop_resize(image, self.size)
        return normalize(image, self.mean, self.std), label
