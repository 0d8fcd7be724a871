"""Small models for the criteria benchmark (benchmarks/criteria.py).

``PatchResNet``: a ResNet-style CNN for 32x32 patches with four stages, batch norm,
identity residuals inside a stage and 1x1-conv (+BN) projection shortcuts between
stages. It has the couplings a pruning criterion has to cope with: per-block inner
channel groups (free to shrink) and one residual-stream group per stage that ties the
stage's block outputs, its shortcut and its BNs together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "PatchResNet", "build_model", "DESCRIPTIONS"]

#: human-readable architecture of each named model (for the results table)
DESCRIPTIONS = {
    "resnet": "widths 16/32/64/128, 4 stages x 2 basic blocks, BN, residuals, 1x1 projection shortcuts",
    "resnet-tiny": "widths 8/16/16/32, 4 stages x 1 basic block, BN, residuals, 1x1 projection shortcuts",
}


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class PatchResNet(nn.Module):
    """Four-stage ResNet for small images (CIFAR-style stem, no max-pool).

    Args:
        num_classes: output classes.
        widths: channels of the four stages.
        blocks: basic blocks per stage.
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 11,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        c_in = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stage = [BasicBlock(c_in if j == 0 else w, w, stride=(1 if i == 0 or j else 2)) for j in range(n)]
            layers.append(nn.Sequential(*stage))
            c_in = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_model(name: str = "resnet", num_classes: int = 11, seed: int = 0) -> nn.Module:
    """``"resnet"`` (the benchmark model) or ``"resnet-tiny"`` (for --quick), seeded."""
    torch.manual_seed(seed)
    if name == "resnet":
        return PatchResNet(num_classes, widths=(16, 32, 64, 128), blocks=(2, 2, 2, 2))
    if name == "resnet-tiny":
        return PatchResNet(num_classes, widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1))
    raise ValueError(f"unknown model {name!r}; choose 'resnet' or 'resnet-tiny'")
