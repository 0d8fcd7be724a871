"""Models of the CamVid benchmark (benchmarks/camvid.py): a CNN and a SegFormer per task.

* ``seg-cnn``: :class:`SegCNN`, a small encoder-decoder (BN, residual blocks, a
  U-Net-style decoder that concatenates upsampled deep features with skip features);
  logits at 1/4 of the input resolution, resized to the labels by the task loss.
* ``segformer``: ``transformers.SegformerForSemanticSegmentation`` from a small config,
  random init (logits at 1/4 resolution).
* ``cls-cnn``: the criteria benchmark's ``PatchResNet`` (4 stages x 2 blocks) for 32x32
  scene patches (reused from ``criteria_models``).
* ``segformer-cls``: ``transformers.SegformerForImageClassification``, same family as the
  segmenter, configured for 32x32 patches.

The ``-tiny`` variants are for ``--quick`` smoke runs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from criteria_models import build_model as build_patch_resnet

__all__ = ["SegCNN", "build", "DESCRIPTIONS", "MODEL_TASK"]

#: model name -> task ("segmentation" on frames, "classification" on patches)
MODEL_TASK = {
    "seg-cnn": "segmentation", "segformer": "segmentation",
    "cls-cnn": "classification", "segformer-cls": "classification",
    "seg-cnn-tiny": "segmentation", "segformer-tiny": "segmentation",
    "cls-cnn-tiny": "classification", "segformer-cls-tiny": "classification",
}

DESCRIPTIONS = {
    "seg-cnn": "CNN encoder-decoder: widths 24/32/64/128, residual blocks, concat skips, logits at 1/4",
    "segformer": "HF SegFormer, hidden 16/32/64/128, depths 1/2/2/1, heads 1/2/4/8, decoder 64, random init",
    "cls-cnn": "PatchResNet (criteria benchmark): widths 16/32/64/128, 4 stages x 2 basic blocks",
    "segformer-cls": "HF SegformerForImageClassification, hidden 16/32/64/128, depths 1/2/2/1, strides 2/2/2/1",
}


def _conv_bn(c_in: int, c_out: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class _Res(nn.Module):
    """Two 3x3 conv-BN with an identity shortcut; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class SegCNN(nn.Module):
    """Encoder (strides 2, 4, 8, 16) and a concat-skip decoder back to stride 4.

    Args:
        num_classes: output classes.
        widths: channels at strides 2, 4, 8 and 16.

    Input ``(B, 3, H, W)``; output logits ``(B, num_classes, ceil(H/4), ceil(W/4))``.
    """

    def __init__(self, num_classes: int = 11, widths: tuple[int, int, int, int] = (24, 32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = _conv_bn(3, w1, 2)
        self.down2 = nn.Sequential(_conv_bn(w1, w2, 2), _Res(w2))
        self.down3 = nn.Sequential(_conv_bn(w2, w3, 2), _Res(w3))
        self.down4 = nn.Sequential(_conv_bn(w3, w4, 2), _Res(w4))
        # Concatenation makes the decoder's input channels a union of two groups: the
        # coupling cpd's comb has to map with exact offsets.
        self.up3 = _conv_bn(w4 + w3, w3)
        self.up2 = _conv_bn(w3 + w2, w2)
        self.classifier = nn.Conv2d(w2, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _up(x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        s2 = self.stem(x)
        s4 = self.down2(s2)
        s8 = self.down3(s4)
        s16 = self.down4(s8)
        d8 = self.up3(torch.cat([self._up(s16, s8), s8], dim=1))
        d4 = self.up2(torch.cat([self._up(d8, s4), s4], dim=1))
        return self.classifier(d4)


def _segformer_config(tiny: bool, **extra: Any) -> Any:
    from transformers import SegformerConfig

    if tiny:
        sizes = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 16, 32], num_attention_heads=[1, 2, 2, 4],
                     decoder_hidden_size=16)
    else:
        sizes = dict(depths=[1, 2, 2, 1], hidden_sizes=[16, 32, 64, 128], num_attention_heads=[1, 2, 4, 8],
                     decoder_hidden_size=64)
    return SegformerConfig(num_labels=11, drop_path_rate=0.0, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0, **sizes, **extra)


def build(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialised model by name (see :data:`MODEL_TASK`), seeded."""
    if name not in MODEL_TASK:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_TASK)}")
    torch.manual_seed(seed)
    tiny = name.endswith("-tiny")
    base = name.removesuffix("-tiny")
    if base == "seg-cnn":
        return SegCNN(11, (8, 8, 16, 16) if tiny else (24, 32, 64, 128))
    if base == "cls-cnn":
        return build_patch_resnet("resnet-tiny" if tiny else "resnet", num_classes=11, seed=seed)
    if base == "segformer":
        from transformers import SegformerForSemanticSegmentation

        return SegformerForSemanticSegmentation(_segformer_config(tiny))
    from transformers import SegformerForImageClassification

    # 32x32 patches: strides 2/2/2/1 keep stage resolutions at 16/8/4/4 instead of
    # the default 8/4/2/1, where attention would have next to nothing to attend over.
    cfg = _segformer_config(tiny, patch_sizes=[3, 3, 3, 3], strides=[2, 2, 2, 1], sr_ratios=[2, 1, 1, 1],
                            image_size=32)
    return SegformerForImageClassification(cfg)
