"""Tests for cpd.report.onnx_export and onnx_runtime: export, onnxruntime check, timing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cpd.report.onnx_export import export_onnx  # noqa: E402
from cpd.report.onnx_runtime import OnnxMismatchError, check_onnx, time_onnx  # noqa: E402

# Tracer warnings about shape-dependent Python code are expected in these models.
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


class _TinyViT(nn.Module):
    """Patchify, one pre-norm attention block (sdpa) + MLP, CLS head; pixel_values=(B, 3, 16, 16)."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 3)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))
        x = x + self.mlp(self.norm2(x))
        return {"logits": self.head(x[:, 0]), "tokens": x}


def test_cnn_export_matches_and_batch_is_dynamic(tmp_path: Path) -> None:
    model = _cnn().train()
    path = export_onnx(model, torch.randn(2, 3, 16, 16), tmp_path / "sub" / "cnn.onnx")
    assert path.is_file() and path.stat().st_size > 0
    assert model.training  # mode restored after export
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["cnn.onnx"]  # no temp files left
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape[0] == "batch"
    assert check_onnx(path, model, torch.randn(5, 3, 16, 16)) < 1e-4
    lat = time_onnx(path, torch.randn(1, 3, 16, 16), batch_size=3, warmup=1, repeats=3)
    assert lat.backend == "onnxruntime" and lat.batch_size == 3
    assert lat.median_ms > 0 and lat.p90_ms >= lat.median_ms


def test_vit_like_dict_inputs(tmp_path: Path) -> None:
    model = _TinyViT()
    inputs = {"pixel_values": torch.randn(1, 3, 16, 16)}
    path = export_onnx(model, inputs, tmp_path / "vit.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    assert [o.name for o in session.get_outputs()] == ["logits", "tokens"]
    assert check_onnx(path, model, inputs, batch_sizes=[1, 4]) < 1e-4
    assert time_onnx(path, inputs, batch_size=2, warmup=0, repeats=2, threads=1).threads == 1


def test_hf_vit_export(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        image_size=32, patch_size=8, num_labels=5,
    )
    model = transformers.ViTForImageClassification(config)
    path = export_onnx(model, {"pixel_values": torch.randn(2, 3, 32, 32)}, tmp_path / "hf.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]


class _Noisy(nn.Module):
    """Random output: its ONNX twin can never match PyTorch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)


class _Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("cannot trace me")
        return x


class _BakedBatch(nn.Module):
    """int() turns the batch size into a constant of the trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(int(x.shape[0]), -1).sum(1)


@pytest.mark.parametrize(
    ("bad", "error"),
    [(_Noisy(), OnnxMismatchError), (_Untraceable(), RuntimeError), (_BakedBatch(), OnnxMismatchError)],
    ids=["mismatch", "export-error", "baked-batch"],
)
def test_failed_export_leaves_previous_file(tmp_path: Path, bad: nn.Module, error: type[Exception]) -> None:
    path = export_onnx(_cnn(), torch.randn(2, 3, 8, 8), tmp_path / "model.onnx")
    before = path.read_bytes()
    with pytest.raises(error):
        export_onnx(bad, torch.randn(2, 3, 8, 8), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_check_reports_mismatch_clearly(tmp_path: Path) -> None:
    path = export_onnx(_TinyViT(), {"pixel_values": torch.randn(2, 3, 16, 16)}, tmp_path / "a.onnx", verify=False)
    other = _TinyViT()  # different random weights
    with pytest.raises(OnnxMismatchError, match=r"ONNX output 'logits' .* does not match PyTorch.*atol=0.0001, rtol=0.001"):
        check_onnx(path, other, {"pixel_values": torch.randn(2, 3, 16, 16)})


def test_missing_onnx_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "cpd\[onnx\]"') as info:
        export_onnx(_cnn(), torch.randn(1, 3, 8, 8), tmp_path / "x.onnx")
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "cpd\[onnx\]"'):
        time_onnx(tmp_path / "x.onnx", torch.randn(1, 3, 8, 8))
