"""Measuring forward latency and throughput.

Protocol (shared by the PyTorch and the onnxruntime timers):

1. ``warmup`` untimed runs (allocator caches, oneDNN / cuDNN kernel selection,
   lazy initialisation);
2. up to ``repeats`` timed runs, each timed on its own with ``perf_counter``; on
   CUDA the device is synchronised before starting the clock and after each run,
   since kernels are launched asynchronously. The timed phase also stops once
   ``max_seconds`` have passed (after at least ``MIN_REPEATS`` runs), so a large
   model on a small CPU gets a bounded measurement;
3. report the median (robust to the odd preempted run) and the 90th percentile,
   plus throughput = ``batch_size / median``.

The garbage collector is paused during the timed runs so a collection does not
land inside one of them.

Defaults are chosen for CPU: ResNet-50 takes ~0.05-0.1 s per image on two cores
and ViT-B/16 ~0.15-0.3 s, i.e. about 1-2.5 s for a batch of 8. Three warm-up runs
are enough for oneDNN to settle; 20 repeats give a stable median for small
models, and the 30 s budget keeps ViT-B/16 at batch 8 to well under a minute.

Threads matter more than anything else on a shared machine: torch's OpenMP
workers wait for each other at every op, so if another process takes one of two
cores, two threads run ~10x *slower* than one (measured here: ResNet-50, batch 1,
95 ms with 1 thread vs 1.7 s with 2 under load). Pass ``threads=`` to compare
like with like; the thread count is recorded in the result.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cpd.inputs import (
    ExampleInputs,
    batch_like,
    batch_size_of,
    call_model,
    evaluating,
    model_device,
    to_device,
)

DEFAULT_WARMUP = 3
DEFAULT_REPEATS = 20
DEFAULT_MAX_SECONDS = 30.0
#: Fewest timed runs, even past the time budget: a median of fewer is noise.
MIN_REPEATS = 5


@dataclass(frozen=True)
class Latency:
    """The result of one latency measurement.

    Attributes:
        batch_size: images per forward pass.
        median_ms: median wall time of one forward pass, milliseconds.
        p90_ms: 90th percentile (linear interpolation), milliseconds.
        mean_ms: mean, milliseconds.
        min_ms: fastest run, milliseconds.
        throughput: images per second, ``batch_size / median``.
        runs: timed runs actually made (<= repeats when the time budget ran out).
        warmup: untimed warm-up runs.
        threads: intra-op threads used (torch or onnxruntime).
        device: ``"cpu"``, ``"cuda:0"``...
        backend: ``"torch"`` or ``"onnxruntime"``.
    """

    batch_size: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    throughput: float
    runs: int
    warmup: int
    threads: int
    device: str
    backend: str = "torch"

    def speedup_over(self, baseline: Latency) -> float:
        """How many times faster than ``baseline`` (ratio of medians)."""
        return baseline.median_ms / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict, for JSON reports."""
        return asdict(self)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Use ``threads`` intra-op threads in the block (``None``: leave as is).

    Yields the thread count in effect; the previous count is restored afterwards.
    """
    old = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if threads is not None:
            torch.set_num_threads(old)


@contextmanager
def _gc_paused() -> Iterator[None]:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_callable(
    fn: Callable[[], object],
    *,
    batch_size: int,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    sync: Callable[[], None] | None = None,
    threads: int,
    device: str,
    backend: str,
) -> Latency:
    """Time ``fn()`` with the protocol in the module docstring.

    Args:
        fn: runs one forward pass of ``batch_size`` images.
        batch_size: images per call, for throughput.
        warmup: untimed runs first.
        repeats: most timed runs, >= 1.
        max_seconds: time budget for the timed runs (``None``: no budget).
        sync: called before starting and after each run (CUDA synchronisation).
        threads, device, backend: recorded in the result.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    with _gc_paused():
        start = time.perf_counter()
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
            over_budget = max_seconds is not None and time.perf_counter() - start > max_seconds
            if over_budget and len(times) >= min(MIN_REPEATS, repeats):
                break
    ms = np.asarray(times) * 1e3
    median = float(np.median(ms))
    return Latency(
        batch_size=batch_size,
        median_ms=median,
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        throughput=batch_size / (median / 1e3),
        runs=len(times),
        warmup=warmup,
        threads=threads,
        device=device,
        backend=backend,
    )


def measure_latency(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    batch_size: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    threads: int | None = None,
) -> Latency:
    """Time ``model``'s forward pass on the device it lives on.

    Runs under ``torch.inference_mode`` in eval mode (training flags restored
    afterwards). Inputs are moved to the model's device; on CUDA each run is
    synchronised.

    Args:
        model: any ``nn.Module``.
        example_inputs: tensor / tuple / mapping, e.g. a ``(B, 3, H, W)`` batch;
            resized along dim 0 to ``batch_size`` with :func:`batch_like`.
        batch_size: images per forward pass; ``None`` keeps the inputs' batch.
        warmup: untimed runs first.
        repeats: most timed runs.
        max_seconds: time budget for the timed runs (``None``: always ``repeats``).
        threads: torch intra-op threads for the measurement (``None``: current
            setting). Restored afterwards. Ignored for the GPU work itself.

    Returns:
        A :class:`Latency` with median / p90 in ms and images per second.
    """
    device = model_device(model, example_inputs)
    if batch_size is None:
        batch_size = batch_size_of(example_inputs)
    inputs = to_device(batch_like(example_inputs, batch_size), device)
    sync: Callable[[], None] | None = None
    if device.type == "cuda":
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731

    def run() -> object:
        return call_model(model, inputs)

    with torch_threads(threads) as n_threads, evaluating(model), torch.inference_mode():
        return time_callable(
            run,
            batch_size=batch_size,
            warmup=warmup,
            repeats=repeats,
            max_seconds=max_seconds,
            sync=sync,
            threads=n_threads,
            device=str(device),
            backend="torch",
        )
