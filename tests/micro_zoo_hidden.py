"""Micro-zoo, part two: couplings the aten trace cannot see, and the ops added with them.

Sizes read in Python (from another tensor's shape, from attributes with equal
values, derived from attributes, checked by the model's own code) are settled by
the rehearsal on fake tensors (:mod:`cpd.groups.repair`); ``as_strided`` and
fold/unfold map channels through strides. Inputs and outputs as in
:mod:`micro_zoo` (the coupling patterns the trace alone resolves).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from micro_zoo import Head, cbr


class ReadsOtherShape(nn.Module):
    """PvT / PvT-v2 attention: ``B, N, C = x.shape`` read from the block's input sizes
    a spatial-reduction conv's output and the heads' output, so both must follow C."""

    def __init__(self, dim: int = 12, heads: int = 3) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.embed = nn.Conv2d(3, dim, 2, stride=2)  # 4 x 4 tokens
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, 2, stride=2)
        self.proj = nn.Linear(dim, dim)
        self.head = Head(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).reshape(b, c, -1).transpose(1, 2)
        k = self.k(kv).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(kv).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        y = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.head(x + self.proj(y))


class DerivedHeadDim(nn.Module):
    """LeViT attention: one projection split per head into [key_dim, key_dim,
    ratio * key_dim]; v's size is derived from key_dim, so neither head dim can
    shrink (the heads can)."""

    def __init__(self, dim: int = 12, heads: int = 3, key_dim: int = 4, ratio: int = 2) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.ratio = heads, key_dim, ratio
        self.out_dim = heads * ratio * key_dim
        self.embed = nn.Conv2d(3, dim, 2, stride=2)
        self.qkv = nn.Linear(dim, heads * (2 + ratio) * key_dim)
        self.proj = nn.Linear(self.out_dim, dim)
        self.head = Head(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.num_heads, -1).split(
            [self.key_dim, self.key_dim, self.ratio * self.key_dim], dim=3)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        y = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2)
        return self.head(x + self.proj(y.reshape(b, n, self.out_dim)))


class HeadDimFromWidth(nn.Module):
    """CvT attention: ``head_dim = self.embed_dim // self.num_heads``, where embed_dim
    equals both the block width and the heads' width; it must follow the heads'."""

    def __init__(self, dim: int = 12, heads: int = 3) -> None:
        super().__init__()
        self.embed_dim, self.num_heads = dim, heads
        self.embed = nn.Conv2d(3, dim, 2, stride=2)
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.head = Head(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        b, n, c = x.shape
        x = x + self.dw(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        hd = self.embed_dim // self.num_heads
        q, k, v = (p(x).view(b, n, self.num_heads, hd).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        y = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2)
        return self.head(x + self.o(y.reshape(b, n, self.num_heads * hd)))


class ChecksWidth(nn.Module):
    """A stage that checks its input width against an attribute (PvT's patch
    embeddings): the attribute must follow the previous stage's pruned width."""

    class Stage(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.num_channels = cin
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] != self.num_channels:
                raise ValueError("input width does not match num_channels")
            return F.relu(self.conv(x))

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = self.Stage(3, 8), self.Stage(8, 6), self.Stage(6, 6)
        self.head = Head(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c(self.b(self.a(x))))


class CrossAttention(nn.Module):
    """``nn.MultiheadAttention`` with query != key, on its Python path: learned queries
    attending to tokens (SigLIP's pooling head), and separate key/value widths."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 12, 2, stride=2)
        self.memory = nn.Conv2d(3, 6, 2, stride=2)
        self.probe = nn.Parameter(torch.randn(1, 1, 12))
        self.pool = nn.MultiheadAttention(12, 3, batch_first=True)
        self.cross = nn.MultiheadAttention(12, 3, kdim=6, vdim=6, batch_first=True)
        self.head = Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        m = self.memory(x).flatten(2).transpose(1, 2)
        q = self.probe.expand(x.shape[0], -1, -1)
        y = self.pool(q, t, t)[0]
        y = y + self.cross(y, m, m)[0]
        return self.head(y)


class Strided(nn.Module):
    """``torch.as_strided`` as a channels-last view of contiguous memory, and
    ``as_strided_`` restriding the unit dims of a pooled map (Swin's pooler)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.lin = nn.Linear(8, 6)
        self.head = Head(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        b, c, h, w = y.shape
        z = self.lin(torch.as_strided(y, (b, h, w, c), (c * h * w, w, 1, h * w)))
        p = F.adaptive_avg_pool2d(z.permute(0, 3, 1, 2), 1)
        n = p.shape[1]
        p.as_strided_((b, n, 1, 1), (n, 1, n, n))
        return self.head.fc(p.flatten(1))


class FoldUnfold(nn.Module):
    """MobileViTv2: unfold a map into 2 x 2 patches, mix channels per pixel, fold back."""

    def __init__(self) -> None:
        super().__init__()
        self.a = cbr(3, 8)
        self.mix = nn.Linear(8, 6)
        self.b = cbr(6, 6)
        self.head = Head(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        b, c, h, w = y.shape
        p = F.unfold(y, 2, stride=2).reshape(b, c, 4, -1)
        p = self.mix(p.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        pb, pc, pk, pn = p.shape
        y = F.fold(p.reshape(pb, pc * pk, pn), (h, w), 2, stride=2)
        return self.head(self.b(y))


class CachedScale(nn.Module):
    """LeViT's attention-bias cache: eval mode caches a tensor derived from a weight
    and ``train()`` drops it; pruning must not keep (or trace) the stale cache."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(8) + 0.5)
        self.cache: dict[str, torch.Tensor] = {}
        self.head = Head(8)

    def train(self, mode: bool = True) -> "CachedScale":
        super().train(mode)
        if mode:
            self.cache = {}
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale * 2 if self.training else self.cache.setdefault("s", self.scale * 2)
        return self.head(self.a(x) * s[:, None, None])


# Python-level couplings and the ops added with them; pruned == masked dense for all.
REHEARSED = [ReadsOtherShape, DerivedHeadDim, HeadDimFromWidth, ChecksWidth, CrossAttention,
             Strided, FoldUnfold, CachedScale]
