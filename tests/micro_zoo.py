"""A micro-zoo: one small model per coupling pattern the Comb step must handle.

Every model takes a (2, 3, 8, 8) image unless its ``INPUT`` says otherwise, and
returns logits, so the output layer is frozen automatically. The couplings that
only a rehearsal of the pruning reveals (sizes read in Python) are in
:mod:`micro_zoo_hidden`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def cbr(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, c: int, n: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(c, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)) if x.dim() == 4 else x.mean(1))


class Residual(nn.Module):
    """Residual add and mul (a gate) on one stream."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.a, self.b = cbr(3, 8), cbr(8, 8), cbr(8, 8)
        self.gate = nn.Conv2d(8, 8, 1)
        self.head = Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.a(x)
        x = x * torch.sigmoid(self.gate(x)) + self.b(x)
        return self.head(x)


class Concat(nn.Module):
    """Dense-style cat with channel offsets, then slice, split and chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = cbr(3, 6), cbr(6, 4), cbr(10, 8)
        self.d = cbr(5, 6)
        self.e = cbr(3, 6)
        self.head = Head(3 + 3 + 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        y = torch.cat([a, self.b(a)], 1)  # 6 + 4
        z = self.c(y)  # 8
        p, q = z.split([5, 3], 1)
        r1, r2 = self.d(p).chunk(2, 1)
        out = torch.cat([r1 + r2, q, self.e(x[:, :3])], 1)
        return self.head(out)


class Unbind(nn.Module):
    """timm-style attention: one qkv Linear reshaped to (3, heads, head_dim) and unbound."""

    def __init__(self, dim: int = 24, heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5  # fixed at init, as timm does
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 32), nn.Linear(32, dim)
        self.head = Head(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        att = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        x = x + self.proj(y)
        x = x + self.fc2(F.gelu(self.fc1(x)))
        return self.head(x)


class SDPA(nn.Module):
    """Separate q/k/v projections, heads via view, fused attention, pos embed + cls token."""

    def __init__(self, dim: int = 24, heads: int = 4, tokens: int = 4) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.scale = self.hd**-0.5
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim))
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim))  # layer scale
        self.head = Head(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        b, n, _ = x.shape
        q, k, v = (p(x).view(b, n, -1, self.hd).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, scale=self.scale).transpose(1, 2).reshape(b, n, -1)
        x = x + self.gamma * self.o(y)
        return self.head.fc(x[:, 0])


class Grouped(nn.Module):
    """Grouped conv (ResNeXt), depthwise (MobileNet) and depthwise with a multiplier."""

    def __init__(self) -> None:
        super().__init__()
        self.a = cbr(3, 8)
        self.g = cbr(8, 8, groups=4)
        self.dw = cbr(8, 8, groups=8)
        self.dwm = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.pw = cbr(16, 8, k=1)
        self.head = Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = x + self.g(x)
        x = self.dw(x)
        return self.head(self.pw(self.dwm(x)))


class Transposed(nn.Module):
    """Encoder-decoder with a transposed conv and a per-pixel head (segmentation)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.upg = nn.ConvTranspose2d(6, 6, 3, padding=1, groups=2)
        self.cls = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls(F.relu(self.upg(F.relu(self.up(self.enc(x))))))


class Norms(nn.Module):
    """Batch, group, instance and channels-last layer norm."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.c = nn.Conv2d(8, 6, 1)
        self.ln = nn.LayerNorm(6)
        self.head = Head(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.gn(self.a(x)))
        x = F.relu(self.inorm(self.b(x)))
        x = self.ln(self.c(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x)


class Spatial(nn.Module):
    """Pixel shuffle/unshuffle, pooling and interpolation."""

    def __init__(self) -> None:
        super().__init__()
        self.a = cbr(3, 8)
        self.ps = nn.Conv2d(8, 4 * 4, 3, padding=1)  # -> shuffle(2) -> 4 ch at 2x
        self.b = cbr(4, 6)
        self.c = cbr(24, 8, k=1)  # after unshuffle(2): 6 * 4
        self.head = Head(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.a(x), 2)
        x = F.pixel_shuffle(self.ps(x), 2)
        x = F.avg_pool2d(self.b(x), 1)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.pixel_unshuffle(x, 2)
        return self.head(F.adaptive_avg_pool2d(self.c(x), 2))


class MLPMixerish(nn.Module):
    """Token mixing on a transposed tensor: the token dim is frozen, channels prune."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 12, 2, stride=2)  # 16 tokens
        self.tok = nn.Linear(16, 16)
        self.ch1, self.ch2 = nn.Linear(12, 24), nn.Linear(24, 12)
        self.head = Head(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2)  # (B, C, N)
        x = x + self.tok(x)
        x = x.transpose(1, 2)
        x = x + self.ch2(F.gelu(self.ch1(x)))
        return self.head(x)


# Models whose pruned output must equal the masked dense model exactly (no norm
# across the pruned dim, BatchNorm in eval mode is per-channel).
EXACT = [Residual, Concat, Unbind, SDPA, Grouped, Transposed, Spatial, MLPMixerish]
ALL = EXACT + [Norms]


def example(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(1))
