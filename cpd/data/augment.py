"""Joint image + mask augmentation with kornia, for training only.

Geometric augmentations must move the image and its label map identically; kornia's
``AugmentationSequential`` samples the parameters once and applies them to every
``data_key``, interpolating the mask with nearest-neighbour so labels stay integers.
"""

from __future__ import annotations

from collections.abc import Callable

import kornia.augmentation as K
from kornia.constants import DataKey, Resample
from torch import Tensor

__all__ = ["JointAugment", "resolve_augment"]


class JointAugment:
    """Random resized crop (i.e. random scale and position) and horizontal flip.

    Works on one sample ``(3, H, W)`` or a batch ``(B, 3, H, W)``; the same call on a GPU
    batch is much faster than per-sample augmentation in DataLoader workers.

    Args:
        size: output ``(H, W)`` (an int means square); ``None`` keeps each input's size,
            so only the scale and position change.
        scale: range of the crop area as a fraction of the input area.
        ratio: range of the crop's aspect ratio ``w / h``; ``None`` uses exactly the
            output's aspect ratio, so nothing is stretched (what segmentation wants).
        hflip: whether to flip horizontally with probability 0.5.
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] | None = None,
        hflip: bool = True,
    ) -> None:
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = ratio
        self.hflip = hflip
        # One pipeline per output size: kornia fixes the size at construction.
        self._pipelines: dict[tuple[int, int, bool], K.AugmentationSequential] = {}

    def _pipeline(self, size: tuple[int, int], with_mask: bool) -> K.AugmentationSequential:
        key = (size[0], size[1], with_mask)
        if key not in self._pipelines:
            ratio = self.ratio or (size[1] / size[0], size[1] / size[0])
            # align_corners=False samples the image on the same pixel grid as the nearest-
            # neighbour mask; kornia's default (True) shifts the image by up to a pixel.
            crop = K.RandomResizedCrop(size, scale=self.scale, ratio=ratio, align_corners=False)
            ops: list[K.AugmentationBase2D] = [crop]
            if self.hflip:
                ops.append(K.RandomHorizontalFlip(p=0.5))
            keys = [DataKey.INPUT, DataKey.MASK] if with_mask else [DataKey.INPUT]
            self._pipelines[key] = K.AugmentationSequential(
                *ops,
                data_keys=keys,
                extra_args={DataKey.MASK: {"resample": Resample.NEAREST, "align_corners": None}},
            )
        return self._pipelines[key]

    def __call__(self, image: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Augment.

        Args:
            image: float ``(3, H, W)`` or ``(B, 3, H, W)``.
            mask: integer ``(H, W)`` or ``(B, H, W)`` label map, or ``None``.

        Returns:
            ``(image, mask)`` with the same layout and dtypes as given, at ``size``.
        """
        single = image.ndim == 3
        batch = image[None] if single else image
        size = self.size or (int(batch.shape[-2]), int(batch.shape[-1]))
        if mask is None:
            out = self._pipeline(size, with_mask=False)(batch)
            return (out[0] if single else out), None
        m = (mask[None] if single else mask)[:, None]  # (B, 1, H, W)
        out_img, out_mask = self._pipeline(size, with_mask=True)(batch, m.long())
        out_mask = out_mask[:, 0].to(mask.dtype)
        return (out_img[0], out_mask[0]) if single else (out_img, out_mask)

    def __repr__(self) -> str:
        return f"JointAugment(size={self.size}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip})"


def resolve_augment(
    augment: bool | JointAugment | None, split: str, default: Callable[[], JointAugment]
) -> JointAugment | None:
    """Decide a dataset's augmentation: ``None`` means on for ``train``, off otherwise.

    Args:
        augment: ``None`` (by split), ``True``/``False``, or a ready :class:`JointAugment`.
        split: the split name given by the user.
        default: builds the dataset's default training augmentation.
    """
    if isinstance(augment, JointAugment):
        return augment
    if augment is None:
        augment = split.strip().lower() == "train"
    return default() if augment else None
