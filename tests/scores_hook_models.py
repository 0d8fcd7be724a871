"""Models for the hook-engine tests (``tests/test_scores_hooks.py``).

Not a test module. Each model exercises something the activation-gradient engine
must get exactly right or refuse: in-place ops on captured outputs, a module called
twice, free parameters, embeddings, a weight read outside its module, batch-coupled
forwards, data-dependent control flow, outputs that cannot be sliced per sample.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cpd.groups.group import Group, Member


def plain(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]


class InplaceReuse(nn.Module):
    """An in-place activation right after a conv with bias (LeakyReLU: unlike ReLU it
    changes values where the gradient is not zero, so a stale capture would show),
    ReLU(inplace=True) after BN, one conv block called twice, a free position
    embedding and a layer scale."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.pos = nn.Parameter(torch.randn(1, 8, 8, 8) * 0.1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.gamma = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.head = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.stem(x)) + self.pos
        x = x + self.gamma * self.block(self.block(x))  # the same block twice
        return self.head(x.mean((2, 3)))


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters for every BatchNorm."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """ConvNeXt-style: a LayerNorm subclass normalising dim 1 of an image tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class OneGroupNorm(nn.GroupNorm):
    """PoolFormer-style: a GroupNorm subclass (no rule for its exact type)."""

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels)


class SubclassNorms(nn.Module):
    """Norm subclasses: their affine parameters are scored through F.layer_norm / F.group_norm."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.ln = ChannelsFirstLayerNorm(8)
        self.b = nn.Conv2d(8, 6, 3, padding=1)
        self.gn = OneGroupNorm(6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.ln(self.a(x)))
        return self.head(torch.relu(self.gn(self.b(x))).mean((2, 3)))


def randomize_affine(model: nn.Module) -> nn.Module:
    """Non-trivial affine parameters for LayerNorm / GroupNorm (subclasses included)."""
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model


class Tokens(nn.Module):
    """Token ids -> Embedding (with padding) -> tanh -> LayerNorm -> Linear, mean over tokens."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.ln = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 3)

    def forward(self, ids: Tensor) -> Tensor:
        return self.fc(self.ln(torch.tanh(self.emb(ids)))).mean(1)


def token_groups() -> list[Group]:
    """Embedding features (tied to the LN and the consumer) and embedding rows."""
    return [
        Group(0, 6, [Member("emb.weight", 1, plain(6)), Member("ln.weight", 0, plain(6)),
                     Member("ln.bias", 0, plain(6)), Member("fc.weight", 1, plain(6))]),
        Group(1, 11, [Member("emb.weight", 0, plain(11))]),
    ]


class Leaky(nn.Module):
    """The parent reads ``fc.weight`` itself: the hook on ``fc`` cannot see that use."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.fc(x)) + 0.1 * F.linear(x, self.fc.weight)
        return self.out(h)


def leaky_group() -> Group:
    return Group(0, 6, [Member("fc.weight", 0, plain(6)), Member("fc.bias", 0, plain(6)),
                        Member("out.weight", 1, plain(6))])


class BatchStats(nn.Module):
    """BatchNorm without running statistics: samples interact through the batch mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, track_running_stats=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def batch_stats_group() -> Group:
    return Group(0, 4, [Member("conv.weight", 0, plain(4)), Member("conv.bias", 0, plain(4)),
                        Member("fc.weight", 1, plain(4))])


class Branchy(nn.Module):
    """Data-dependent control flow over the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.fc(x)
        return out * 2 if bool(out.sum() > 0) else out


class Namespaced(nn.Module):
    """Returns a plain object (not a pytree): its outputs cannot be sliced per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 6), nn.Linear(6, 3)

    def forward(self, x: Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.fc2(torch.tanh(self.fc1(x))))


def mlp_group(prefix: str = "") -> Group:
    return Group(0, 6, [Member(f"{prefix}fc1.weight", 0, plain(6)), Member(f"{prefix}fc1.bias", 0, plain(6)),
                        Member(f"{prefix}fc2.weight", 1, plain(6))])
