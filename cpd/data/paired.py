"""A segmentation dataset over (image file, label file) pairs; CamVid and ADE20K build on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from cpd.data.augment import JointAugment
from cpd.data.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_label,
    load_rgb,
    normalize,
    to_float,
)

__all__ = ["PairedSegmentation"]


class PairedSegmentation(Dataset[tuple[Tensor, Tensor]]):
    """Returns ``(image (3, H, W) float normalised, labels (H, W) int64)``.

    Args:
        pairs: ``(image_path, label_path)`` per sample.
        num_classes: number of classes ``C``; labels are in ``[0, C)`` or ``ignore_index``.
        ignore_index: label value of pixels without a class.
        label_map: turns the raw label values read from disk into ``[0, C)``/ignore
            (identity when ``None``).
        augment: joint image/mask augmentation (``None`` for evaluation).
        mean: per-channel mean for normalisation (of [0, 1] images).
        std: per-channel std for normalisation.
    """

    task = "segmentation"

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        num_classes: int,
        ignore_index: int,
        label_map: Callable[[Tensor], Tensor] | None = None,
        augment: JointAugment | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.pairs = list(pairs)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.label_map = label_map
        self.augment = augment
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        """The raw sample: uint8 image ``(3, H, W)`` and mapped labels ``(H, W)``."""
        image_path, label_path = self.pairs[index]
        image = load_rgb(image_path)
        labels = load_label(label_path)
        if self.label_map is not None:
            labels = self.label_map(labels)
        if image.shape[-2:] != labels.shape:
            raise ValueError(
                f"image {image_path} is {tuple(image.shape[-2:])} but its labels {label_path} "
                f"are {tuple(labels.shape)}; they must have the same height and width"
            )
        return image, labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_u8, labels = self.load(index)
        image = to_float(image_u8)
        if self.augment is not None:
            image, aug_labels = self.augment(image, labels)
            assert aug_labels is not None
            labels = aug_labels
        return normalize(image, self.mean, self.std), labels
