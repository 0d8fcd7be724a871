"""Tests for cpd.inputs: calling models on tensor / tuple / dict inputs."""

from __future__ import annotations

import torch
from torch import nn

from cpd.inputs import (
    batch_like,
    batch_size_of,
    call_model,
    evaluating,
    iter_tensors,
    tensor_paths,
)


class _TwoArgs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x - y


class _PixelValues(nn.Module):
    def forward(self, pixel_values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return pixel_values * scale


def test_call_model_tensor_tuple_dict() -> None:
    x, y = torch.ones(2, 3), torch.full((2, 3), 2.0)
    assert torch.equal(call_model(nn.Identity(), x), x)
    assert torch.equal(call_model(_TwoArgs(), (x, y)), x - y)
    assert torch.equal(call_model(_PixelValues(), {"pixel_values": y, "scale": 3.0}), y * 3)
    # A list is unpacked like a tuple (as cpd.trace does); a list argument is wrapped.
    assert torch.equal(call_model(_TwoArgs(), [x, y]), x - y)
    assert call_model(lambda imgs: len(imgs), ([x, y, x],)) == 3


def test_batch_like_repeats_and_shrinks_cyclically() -> None:
    x = torch.arange(6.0).reshape(2, 3)
    grown = batch_like(x, 5)
    assert grown.shape == (5, 3)
    assert torch.equal(grown[:, 0], torch.tensor([0.0, 3.0, 0.0, 3.0, 0.0]))
    assert grown.is_contiguous() and grown.stride(0) == 3  # a real copy, not an expand view
    assert torch.equal(batch_like(x, 1), x[:1])


def test_batch_like_structures_and_unbatched_tensors() -> None:
    x = torch.randn(2, 3, 4, 4)
    mask = torch.ones(7, 7)  # dim 0 is not the batch: left alone
    out = batch_like({"pixel_values": x, "mask": mask, "flag": True, "extra": (x, None)}, 4)
    assert out["pixel_values"].shape == (4, 3, 4, 4)
    assert out["mask"] is mask
    assert out["flag"] is True
    assert out["extra"][0].shape == (4, 3, 4, 4) and out["extra"][1] is None
    assert batch_size_of(out) == 4
    assert batch_like((x,), 3)[0].shape == (3, 3, 4, 4)


def test_tensor_paths_follow_iter_order() -> None:
    x = torch.zeros(1)
    inputs = {"pixel_values": x, "aux": (x, x), "flag": False}
    assert tensor_paths(inputs) == ["pixel_values", "aux_0", "aux_1"]
    assert len(list(iter_tensors(inputs))) == 3
    assert tensor_paths(x) == ["input"]
    assert tensor_paths((x, 1, x)) == ["input_0", "input_2"]


def test_evaluating_restores_each_module_flag() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model.train()
    model[1].eval()  # e.g. frozen BN while fine-tuning
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and not model[1].training
