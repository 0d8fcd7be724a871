"""A tiny segmentation net for the CLI tests, reachable as ``py:cli_seg_models:tiny_segnet``.

Not a test module (no ``test_`` prefix); the CLI tests put ``tests/`` on the path.
"""

from __future__ import annotations

import torch
from torch import nn


class TinySegNet(nn.Module):
    """Two stride-2 conv-BN-ReLU stages and a 1x1 classifier: (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, num_classes: int = 11, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.classifier = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 3, H, W) -> per-pixel logits (B, num_classes, H/4, W/4)."""
        return self.classifier(self.body(x))


def tiny_segnet(num_classes: int = 11, width: int = 8) -> tuple[nn.Module, tuple[int, ...]]:
    """A :class:`TinySegNet` (seeded weights) and its input shape (1, 3, 32, 32)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TinySegNet(num_classes, width), (1, 3, 32, 32)
