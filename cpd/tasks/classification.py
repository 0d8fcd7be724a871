"""Image classification: the task loss and a streaming top-k accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cpd.tasks.metric import StreamingMetric

__all__ = ["classification_loss", "TopKAccuracy"]


def classification_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy averaged over the batch.

    Args:
        logits: ``(B, C)`` raw scores.
        targets: ``(B,)`` integer class indices.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.

    Returns:
        A scalar tensor.
    """
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


class TopKAccuracy(StreamingMetric):
    """Streaming top-k accuracy, in percent.

    ``compute()`` returns ``{"top1": ..., "top5": ...}`` (one key per ``k`` in ``topk``).
    When the model has fewer than ``k`` classes, top-k is computed with ``k = C`` (so it
    is 100%), rather than failing, which keeps tiny demo models usable.

    Args:
        topk: the values of ``k`` to report.
    """

    def __init__(self, topk: Sequence[int] = (1, 5)) -> None:
        if not topk or any(k < 1 for k in topk):
            raise ValueError(f"topk must be a non-empty list of positive integers, got {topk!r}")
        self.topk = tuple(int(k) for k in topk)
        self.reset()

    def reset(self) -> None:
        self.correct = torch.zeros(len(self.topk), dtype=torch.int64)
        self.total = torch.zeros((), dtype=torch.int64)

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add a batch.

        Args:
            logits: ``(B, C)`` scores (any monotone transform of them works too).
            targets: ``(B,)`` integer class indices.
        """
        if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
            raise ValueError(
                f"expected logits (B, C) and targets (B,), got {tuple(logits.shape)} and "
                f"{tuple(targets.shape)}"
            )
        logits = logits.detach()
        targets = targets.detach().to(logits.device)
        kmax = min(max(self.topk), logits.shape[1])
        top = logits.topk(kmax, dim=1).indices  # (B, kmax), best first
        hits = top.eq(targets[:, None])  # at most one True per row
        for i, k in enumerate(self.topk):
            self.correct[i] += int(hits[:, : min(k, kmax)].any(dim=1).sum())
        self.total += targets.shape[0]

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``{"top{k}": accuracy in percent}``; nan before any update."""
        total = int(self.total)
        return {
            f"top{k}": (100.0 * int(c) / total) if total else float("nan")
            for k, c in zip(self.topk, self.correct)
        }

    def _counts(self) -> list[Tensor]:
        return [self.correct, self.total]
