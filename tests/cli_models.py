"""Tiny models for the io and CLI tests, reachable as ``py:cli_models:FACTORY``.

Not a test module (no ``test_`` prefix). The subprocess tests put ``tests/`` on
``PYTHONPATH`` so that the ``py:`` source can import it.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-BN-ReLU, a residual conv-BN-ReLU, global pool, linear; input (B, C, 16, 16)."""

    def __init__(self, num_classes: int = 10, width: int = 8, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                                   nn.Conv2d(2 * width, width, 1), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, H, W) -> logits (B, num_classes)."""
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean(dim=(2, 3)))


def tiny_cnn(num_classes: int = 10, width: int = 8, in_channels: int = 3) -> tuple[nn.Module, tuple[int, ...]]:
    """A :class:`TinyCNN` with random weights (unseeded) and its input shape (1, C, 16, 16)."""
    return TinyCNN(num_classes, width, in_channels), (1, in_channels, 16, 16)


def bare_cnn(width: int = 8) -> nn.Module:
    """A :class:`TinyCNN` without a shape: the source's default input shape applies."""
    return TinyCNN(width=width)


def not_a_model() -> str:
    """A factory that returns something that is not a module."""
    return "nope"


class TiedCNN(TinyCNN):
    """:class:`TinyCNN` with a second classifier whose weight *is* the head's weight:
    two state-dict names for one tensor, which safetensors must store once."""

    def __init__(self, width: int = 8) -> None:
        super().__init__(width=width)
        self.classifier = nn.Linear(width, 10)
        self.classifier.weight = self.head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, H, W) -> logits (B, 10), the sum of both classifiers."""
        x = self.stem(x)
        x = torch.relu(x + self.block(x)).mean(dim=(2, 3))
        return self.head(x) + self.classifier(x)


def tied_cnn(width: int = 8) -> tuple[nn.Module, tuple[int, ...]]:
    """A :class:`TiedCNN` and its input shape (1, 3, 16, 16)."""
    return TiedCNN(width), (1, 3, 16, 16)
