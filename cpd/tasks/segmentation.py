"""Semantic segmentation: resizing logits to the labels, the task loss, and mIoU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cpd.tasks.metric import StreamingMetric

__all__ = ["resize_logits", "segmentation_loss", "ConfusionMatrix"]


def resize_logits(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinearly resize ``(B, C, h, w)`` logits to ``size = (H, W)``; a no-op if equal.

    Many segmentation heads (SegFormer, DeepLab without the final upsample) predict at
    1/4 or 1/8 of the input resolution; the loss and the metric are defined at label size.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def segmentation_loss(
    logits: Tensor, targets: Tensor, ignore_index: int = 255, label_smoothing: float = 0.0
) -> Tensor:
    """Per-pixel cross-entropy averaged over non-ignored pixels.

    Args:
        logits: ``(B, C, h, w)``, resized to the label size first.
        targets: ``(B, H, W)`` integer labels; ``ignore_index`` pixels do not count.
        ignore_index: label value to skip.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.

    Returns:
        A scalar tensor (0 with a gradient path if every pixel is ignored, instead of nan).
    """
    logits = resize_logits(logits, targets.shape[-2:])
    if not bool((targets != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits, targets.long(), ignore_index=ignore_index, label_smoothing=label_smoothing
    )


class ConfusionMatrix(StreamingMetric):
    """Streaming ``(C, C)`` confusion matrix giving mIoU, pixel accuracy and per-class IoU.

    Rows are ground-truth classes, columns predicted classes. Pixels labelled
    ``ignore_index`` (or with any label outside ``[0, C)``) are skipped entirely, so the
    prediction there is irrelevant. ``compute()`` returns, all in percent::

        {"miou": float, "pixel_acc": float, "per_class_iou": [float] * C}

    A class that occurs neither in the labels nor in the predictions (on counted pixels)
    has an undefined IoU: it is ``nan`` in ``per_class_iou`` and left out of ``miou``.

    Args:
        num_classes: ``C``.
        ignore_index: label value to skip.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add a batch.

        Args:
            logits: ``(B, C, h, w)`` scores, upsampled bilinearly to ``(H, W)`` before the
                argmax; or already-computed predictions ``(B, H, W)`` (integer dtype).
            targets: ``(B, H, W)`` integer labels.
        """
        if logits.ndim == 3 and not logits.is_floating_point():
            preds = logits
        elif logits.ndim == 4:
            if logits.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {logits.shape[1]} channels but the metric has "
                    f"{self.num_classes} classes"
                )
            preds = resize_logits(logits.detach(), targets.shape[-2:]).argmax(dim=1)
        else:
            raise ValueError(
                f"expected logits (B, C, h, w) or integer predictions (B, H, W), got "
                f"{tuple(logits.shape)} {logits.dtype}"
            )
        if preds.shape != targets.shape:
            raise ValueError(
                f"predictions {tuple(preds.shape)} and targets {tuple(targets.shape)} differ"
            )
        targets = targets.detach().to(preds.device).long()
        preds = preds.long()
        valid = (targets >= 0) & (targets < self.num_classes) & (targets != self.ignore_index)
        c = self.num_classes
        index = targets[valid] * c + preds[valid].clamp(0, c - 1)
        counts = torch.bincount(index, minlength=c * c).reshape(c, c)
        self.matrix += counts.cpu()

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``miou``, ``pixel_acc`` and ``per_class_iou`` (percent; nan if undefined)."""
        m = self.matrix.double()
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
        present = ~iou.isnan()
        total = m.sum()
        return {
            "miou": 100.0 * float(iou[present].mean()) if bool(present.any()) else math.nan,
            "pixel_acc": 100.0 * float(tp.sum() / total) if float(total) > 0 else math.nan,
            "per_class_iou": [100.0 * float(v) for v in iou],
        }

    def _counts(self) -> list[Tensor]:
        return [self.matrix]
