"""Tests for cpd.report.latency. No speed is asserted: only the protocol."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from cpd.report.latency import Latency, measure_latency, time_callable, torch_threads


class _RecordBatch(nn.Module):
    """Records the batch size and grad mode of each call; pixel_values=(B, 3, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen: list[tuple[int, bool, bool]] = []

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.seen.append((pixel_values.shape[0], torch.is_inference_mode_enabled(), self.training))
        return self.conv(pixel_values)


def test_measure_latency_protocol() -> None:
    model = _RecordBatch().train()
    lat = measure_latency(model, {"pixel_values": torch.randn(1, 3, 16, 16)}, batch_size=3, warmup=2, repeats=7)
    assert isinstance(lat, Latency)
    assert lat.median_ms > 0 and lat.p90_ms >= lat.median_ms >= lat.min_ms
    assert lat.runs == 7 and lat.warmup == 2 and lat.batch_size == 3
    assert lat.throughput == pytest.approx(3 / (lat.median_ms / 1e3))
    assert lat.device == "cpu" and lat.backend == "torch"
    # Every call saw the requested batch, inference mode and eval mode...
    assert model.seen == [(3, True, False)] * 9
    # ...and the model's mode is back afterwards.
    assert model.training
    assert set(lat.to_dict()) >= {"median_ms", "p90_ms", "throughput"}


def test_measure_latency_default_batch_and_tuple_inputs() -> None:
    lat = measure_latency(nn.Bilinear(4, 4, 2), (torch.randn(5, 4), torch.randn(5, 4)), warmup=0, repeats=3)
    assert lat.batch_size == 5 and lat.runs == 3


def test_threads_fixed_then_restored() -> None:
    before = torch.get_num_threads()
    lat = measure_latency(nn.Linear(4, 4), torch.randn(2, 4), warmup=0, repeats=2, threads=1)
    assert lat.threads == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass


def test_time_budget_stops_early_but_keeps_minimum() -> None:
    lat = time_callable(
        lambda: time.sleep(0.002),
        batch_size=1,
        warmup=0,
        repeats=1000,
        max_seconds=0.0,
        threads=1,
        device="cpu",
        backend="test",
    )
    assert lat.runs == 5
    assert lat.median_ms >= 1.5 and lat.p90_ms >= lat.median_ms


def test_speedup_over() -> None:
    fast = time_callable(lambda: None, batch_size=1, warmup=0, repeats=3, threads=1, device="cpu", backend="t")
    slow = time_callable(lambda: time.sleep(0.003), batch_size=1, warmup=0, repeats=3, threads=1, device="cpu", backend="t")
    assert fast.speedup_over(slow) > 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_measure_latency_on_cuda_moves_inputs_and_syncs() -> None:
    model = nn.Conv2d(3, 8, 3).cuda()
    lat = measure_latency(model, torch.randn(1, 3, 32, 32), batch_size=4, warmup=1, repeats=3)
    assert lat.device.startswith("cuda") and lat.runs == 3
    assert lat.p90_ms >= lat.median_ms > 0
