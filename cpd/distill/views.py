"""Extra training views: a CutMix of each batch, trained on like the batch itself.

Why: KD on the training images can only pass on what the teacher knows beyond their
labels. A view the batch does not contain (a CutMix of two of its images) asks the
teacher about inputs it was never fitted on ("function matching", Beyer et al., CVPR
2022), and needs no labels, so it works for classification and segmentation alike.
Dense label maps can be mixed by the same box (:meth:`CutMixBox.paste`), so a
segmentation view also gets its true labels, and the same view without a teacher is the
control that separates the teacher's share from the augmentation's. On CamVid, where
the teachers are small and trained from scratch, the labels were what paid off
(README, "Measured results").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EXTRA_VIEWS", "CutMixBox", "cutmix_box", "cutmix_view", "make_view"]

#: names accepted by ``TrainConfig.extra_view``
EXTRA_VIEWS = ("none", "cutmix")


@dataclass(frozen=True)
class CutMixBox:
    """Where a CutMix pastes: rows ``top:top+height``, columns ``left:left+width`` of
    every sample ``i`` come from sample ``(i + shift) % B``."""

    top: int
    left: int
    height: int
    width: int
    shift: int

    def paste(self, x: Tensor) -> Tensor:
        """``x`` ``(B, ..., H, W)`` with the box of each sample taken from its partner (a new tensor).

        Works for images ``(B, C, H, W)`` and dense labels ``(B, H, W)`` alike, so one box
        can mix a batch and its label maps consistently.
        """
        rows, cols = slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)
        mixed = x.clone()
        mixed[..., rows, cols] = x.roll(self.shift, dims=0)[..., rows, cols]
        return mixed


def cutmix_box(batch: int, height: int, width: int, generator: torch.Generator | None = None) -> CutMixBox:
    """Draw a CutMix box for a batch of ``batch`` frames of ``height x width``.

    The box area is ``U(0, 1)`` of the frame with the frame's aspect ratio (CutMix's
    ``Beta(1, 1)``); ``shift`` is uniform in ``1..batch-1`` so no image mixes with itself.
    ``generator=None`` draws from torch's global RNG, which the trainer seeds and
    checkpoints, so a resumed run draws the same boxes.
    """
    if batch < 2:
        raise ValueError(f"CutMix mixes images of one batch and needs batch size >= 2, got {batch}")
    draw = torch.rand(4, generator=generator).tolist()
    side = math.sqrt(draw[0])  # box area fraction U(0, 1) -> side fraction sqrt
    bh, bw = max(1, round(height * side)), max(1, round(width * side))
    top, left = int(draw[1] * (height - bh + 1)), int(draw[2] * (width - bw + 1))
    return CutMixBox(top, left, bh, bw, shift=1 + int(draw[3] * (batch - 1)))


def cutmix_view(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A CutMix of the batch: one random box of every image replaced by another image's.

    Args:
        images: ``(B, C, H, W)`` (any ``(B, ..., H, W)``) input batch; ``B >= 2``.
        generator: random source (``None``: torch's global one).

    Returns:
        ``(B, C, H, W)``, a new tensor (see :func:`cutmix_box` for the box's law).
    """
    if images.dim() < 3:
        raise ValueError(f"cutmix_view needs (B, ..., H, W) images, got shape {tuple(images.shape)}")
    return cutmix_box(images.shape[0], images.shape[-2], images.shape[-1], generator).paste(images)


def make_view(kind: str, inputs: object) -> tuple[Tensor, CutMixBox] | None:
    """The extra view of a batch's ``inputs`` and the box that made it (``None`` for ``"none"``).

    Returns:
        ``(view, box)``: ``view`` is ``(B, C, H, W)`` like ``inputs``; ``box.paste`` mixes
        the batch's dense label maps the same way when they are to label the view.

    Raises:
        ValueError: unknown ``kind``, or ``inputs`` not one image tensor (views are built
            for models called as ``model(images)``).
    """
    if kind == "none":
        return None
    if kind not in EXTRA_VIEWS:
        raise ValueError(f"unknown extra_view {kind!r}; choose one of {EXTRA_VIEWS}")
    if not isinstance(inputs, Tensor) or inputs.dim() < 3:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"extra_view={kind!r} needs batches whose inputs are one image tensor (B, C, H, W), "
                         f"got {got}; set extra_view='none'")
    box = cutmix_box(inputs.shape[0], inputs.shape[-2], inputs.shape[-1])
    return box.paste(inputs), box
