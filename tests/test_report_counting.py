"""Tests for cpd.report.counting: MACs against textbook formulas, params."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cpd.report.counting import count, count_by_module, count_params


def test_linear_macs() -> None:
    macs, params = count(nn.Linear(64, 32), torch.randn(4, 64))
    assert macs == 4 * 64 * 32  # bias adds are not MACs
    assert params == 64 * 32 + 32
    # Leading dims all count (a token sequence), with or without bias.
    macs3, _ = count(nn.Linear(64, 32, bias=False), torch.randn(2, 5, 64))
    assert macs3 == 2 * 5 * 64 * 32


@pytest.mark.parametrize(
    ("conv", "shape", "expected"),
    [
        # B * C_out * (C_in / groups) * k_h * k_w * H_out * W_out
        (nn.Conv2d(3, 16, 3, stride=2, padding=1), (2, 3, 32, 32), 2 * 16 * 3 * 9 * 16 * 16),
        (nn.Conv2d(3, 16, 3), (1, 3, 10, 12), 16 * 3 * 9 * 8 * 10),
        (nn.Conv2d(8, 16, 3, padding=1, groups=4), (1, 8, 10, 10), 16 * 2 * 9 * 100),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (3, 8, 10, 10), 3 * 8 * 1 * 9 * 100),  # depthwise
        (nn.Conv2d(8, 4, 1), (1, 8, 7, 7), 4 * 8 * 49),  # pointwise
        (nn.Conv1d(4, 8, 3), (1, 4, 10), 8 * 4 * 3 * 8),
    ],
)
def test_conv_macs(conv: nn.Module, shape: tuple[int, ...], expected: int) -> None:
    macs, params = count(conv, torch.randn(*shape))
    assert macs == expected
    assert params == sum(p.numel() for p in conv.parameters())


class _Attention(nn.Module):
    """Minimal ViT attention on (B, N, C) tokens; sdpa or explicit softmax(QK^T)V."""

    def __init__(self, dim: int = 32, heads: int = 4, use_sdpa: bool = True) -> None:
        super().__init__()
        self.heads, self.use_sdpa = heads, use_sdpa
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
            out = attn @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_attention_macs(use_sdpa: bool) -> None:
    b, n, c, h = 2, 16, 32, 4
    macs, _ = count(_Attention(c, h, use_sdpa), torch.randn(b, n, c))
    qkv = b * n * c * 3 * c
    attention = b * h * (n * n * (c // h)) * 2  # QK^T and AV
    proj = b * n * c * c
    assert macs == qkv + attention + proj


def test_sdpa_cross_attention_macs() -> None:
    # S_q != S_k; D_v != D_qk takes the math path on CPU, D_v == D_qk the flash kernel.
    for d_v in (8, 4):
        q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, d_v)
        macs, _ = count(_Sdpa(), (q, k, v))
        assert macs == 1 * 2 * (5 * 7 * 8 + 5 * 7 * d_v)


class _Sdpa(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


class _Shared(nn.Module):
    """One block applied twice, plus two heads with a tied weight."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(8, 8)
        self.head_a = nn.Linear(8, 8, bias=False)
        self.head_b = nn.Linear(8, 8, bias=False)
        self.head_b.weight = self.head_a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.block(x))
        return self.head_a(x) + self.head_b(x)


def test_shared_params_counted_once_macs_per_call() -> None:
    model = _Shared()
    macs, params = count(model, torch.randn(3, 8))
    assert params == (64 + 8) + 64  # block + one tied head weight
    assert count_params(model) == params
    assert macs == 4 * 3 * 8 * 8  # block twice, both heads


class _PixelModel(nn.Module):
    """A stand-in for a Hugging Face model: takes ``pixel_values=`` (B, 3, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(self.conv(pixel_values).mean((2, 3)))}


def test_count_dict_inputs_and_training_flag_restored() -> None:
    model = _PixelModel().train()
    macs, params = count(model, {"pixel_values": torch.randn(2, 3, 8, 8)})
    assert macs == 2 * 4 * 3 * 9 * 64 + 2 * 4 * 2
    assert params == 4 * 3 * 9 + 4 + 4 * 2 + 2
    assert model.training and model.conv.training


def test_count_by_module_names_and_inclusive_totals() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4)))
    x = torch.randn(5, 8)
    per = count_by_module(model, x)
    assert per == {"": 5 * (8 * 16 + 16 * 4), "0": 5 * 8 * 16, "2": 5 * 16 * 4, "2.0": 5 * 16 * 4}
    assert per[""] == count(model, x)[0]


def test_hf_vit_sdpa_and_eager_agree_with_formula() -> None:
    transformers = pytest.importorskip("transformers")
    batch, dim, mlp, tokens, classes = 2, 32, 64, (32 // 8) ** 2 + 1, 5
    per_image = (
        (tokens - 1) * dim * 3 * 8 * 8  # patch embedding conv
        + 2 * (4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * mlp)  # 2 layers
        + dim * classes  # classifier on the CLS token
    )
    results = []
    for impl in ("eager", "sdpa"):
        config = transformers.ViTConfig(
            hidden_size=dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=mlp,
            image_size=32,
            patch_size=8,
            num_labels=classes,
            attn_implementation=impl,
        )
        model = transformers.ViTForImageClassification(config)
        results.append(count(model, {"pixel_values": torch.randn(batch, 3, 32, 32)}))
        assert results[-1][1] == sum(p.numel() for p in model.parameters())
    assert results[0] == results[1]
    assert results[0][0] == batch * per_image


def test_count_on_meta_device_matches_cpu() -> None:
    # cpd.plan measures candidate models on the meta device (shapes, no storage).
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(1), nn.Unflatten(1, (8, 36)), _Attention(36, 4))
    x = torch.randn(2, 3, 8, 8)
    assert count(model.to("meta"), x.to("meta")) == count(model.to_empty(device="cpu"), x)


def test_count_when_a_module_returns_a_parameter() -> None:
    """A module may return its Parameter itself (Perceiver's position encodings);
    the flop counter's module tracker must not trip over it, and flags are restored."""

    class Pos(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos = torch.nn.Parameter(torch.randn(4, 8))

        def forward(self) -> torch.Tensor:
            return self.pos

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p, self.fc = Pos(), torch.nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x + self.p())

    net = Net()
    macs, params = count(net, torch.randn(1, 4, 8))
    assert macs == 4 * 8 * 2 and params == 32 + 18
    assert all(p.requires_grad for p in net.parameters())
