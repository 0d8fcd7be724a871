"""Running an ONNX file with onnxruntime: checking it against PyTorch, timing it.

``onnx`` and ``onnxruntime`` are optional (``pip install "cpd[onnx]"``);
onnxruntime is imported only when a function here is called, and its absence
gives a one-line ``ImportError`` saying how to install it.
"""

from __future__ import annotations

import os
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
    iter_tensors,
    model_device,
    tensor_paths,
    to_device,
)
from cpd.report.latency import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    Latency,
    time_callable,
)

#: float32 tolerances for the PyTorch / onnxruntime comparison. Kernels differ in
#: summation order and fusions (conv+BN folding, GELU, LayerNorm), which moves
#: results by ~1e-6 relative per layer; deep nets accumulate more (random-init
#: ResNet-50 logits: max |diff| 5e-5, ViT-B/16: 2e-6).
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4
_INSTALL_HINT = 'ONNX support needs the optional packages onnx and onnxruntime: pip install "cpd[onnx]"'


class OnnxMismatchError(RuntimeError):
    """The ONNX file's outputs differ from PyTorch's beyond the tolerance."""


def import_onnxruntime() -> Any:
    """Import onnxruntime, or raise a one-line ``ImportError`` with the install hint."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    return onnxruntime


def _session(path: str | os.PathLike[str], threads: int | None, providers: list[str] | None) -> Any:
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def _feed(session: Any, example_inputs: ExampleInputs) -> dict[str, np.ndarray]:
    """Map ONNX input names to numpy arrays of the example inputs.

    Inputs are matched by name (as :func:`export_onnx` names them), or by
    position for a file exported elsewhere. The tracer drops inputs the model
    never reads, so the graph may want fewer than we have.
    """
    arrays = [t.detach().cpu().numpy() for t in iter_tensors(example_inputs)]
    by_name = dict(zip(tensor_paths(example_inputs, prefix="input"), arrays))
    wanted = [i.name for i in session.get_inputs()]
    if all(n in by_name for n in wanted):
        return {n: by_name[n] for n in wanted}
    if len(wanted) == len(arrays):
        return dict(zip(wanted, arrays))
    raise ValueError(f"ONNX inputs {wanted} do not match the example inputs {list(by_name)}")


def check_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    batch_sizes: list[int] | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> float:
    """Compare an ONNX file with the PyTorch model on onnxruntime (CPU).

    Every output must satisfy ``|onnx - torch| <= atol + rtol * |torch|``
    elementwise (``numpy.allclose``), with the same shape.

    Args:
        path: the ONNX file.
        model: the PyTorch model it was exported from (run in eval mode, no_grad).
        example_inputs: tensor / tuple / mapping.
        batch_sizes: batch sizes to check, via :func:`batch_like`; ``None``
            checks the example inputs' own batch.
        rtol, atol: tolerances.

    Returns:
        The largest absolute difference seen over all outputs and batch sizes.

    Raises:
        OnnxMismatchError: an output differs in count, shape or value.
    """
    session = _session(path, threads=None, providers=None)
    out_names = [o.name for o in session.get_outputs()]
    device = model_device(model, example_inputs)
    worst = 0.0
    for b in batch_sizes or [batch_size_of(example_inputs)]:
        inputs = batch_like(example_inputs, b)
        with evaluating(model), torch.no_grad():
            expected = [t.detach().cpu().numpy() for t in iter_tensors(call_model(model, to_device(inputs, device)))]
        try:
            got = session.run(out_names, _feed(session, inputs))
        except Exception as e:  # onnxruntime raises its own exception types
            raise OnnxMismatchError(
                f"onnxruntime failed to run {path} at batch {b} "
                f"(a shape baked in by tracing?): {type(e).__name__}: {e}"
            ) from e
        if len(got) != len(expected):
            raise OnnxMismatchError(f"ONNX file {path} has {len(got)} outputs, the PyTorch model returns {len(expected)}")
        for name, e, g in zip(out_names, expected, got):
            if e.shape != g.shape:
                raise OnnxMismatchError(
                    f"ONNX output {name!r} has shape {g.shape}, PyTorch {e.shape} (batch {b}); "
                    "the export may have baked in a shape"
                )
            e64, g64 = e.astype(np.float64), g.astype(np.float64)
            diff = np.abs(e64 - g64)
            finite = diff[np.isfinite(diff)]
            if finite.size:
                worst = max(worst, float(finite.max()))
            if not np.allclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True):
                excess = np.where(np.isnan(diff), np.inf, diff - rtol * np.abs(e64))
                idx = np.unravel_index(int(np.argmax(excess)), e.shape)
                raise OnnxMismatchError(
                    f"ONNX output {name!r} (shape {e.shape}, batch {b}) does not match PyTorch: "
                    f"at index {tuple(int(i) for i in idx)} torch={e64[idx]:.6g} onnx={g64[idx]:.6g}, "
                    f"max |diff|={finite.max() if finite.size else float('nan'):.3g}; allowed |diff| <= atol + rtol*|torch| with atol={atol:g}, rtol={rtol:g}"
                )
    return worst


def time_onnx(
    path: str | os.PathLike[str],
    example_inputs: ExampleInputs,
    *,
    batch_size: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    threads: int | None = None,
    providers: list[str] | None = None,
) -> Latency:
    """Time an ONNX file with onnxruntime, with the same protocol as PyTorch.

    Args:
        path: the ONNX file (with a dynamic batch axis if ``batch_size`` differs
            from the batch it was exported with).
        example_inputs: tensor / tuple / mapping, resized to ``batch_size``.
        batch_size: images per run; ``None`` keeps the inputs' batch.
        warmup, repeats, max_seconds: as in :func:`cpd.report.latency.measure_latency`.
        threads: onnxruntime intra-op threads; ``None`` uses torch's current
            thread count, so that PyTorch and onnxruntime timings are comparable.
        providers: onnxruntime execution providers (default CPU).

    Returns:
        A :class:`Latency` with ``backend="onnxruntime"``.
    """
    n_threads = threads if threads is not None else torch.get_num_threads()
    session = _session(path, threads=n_threads, providers=providers)
    if batch_size is None:
        batch_size = batch_size_of(example_inputs)
    feed = _feed(session, batch_like(example_inputs, batch_size))
    device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    return time_callable(
        lambda: session.run(None, feed),
        batch_size=batch_size,
        warmup=warmup,
        repeats=repeats,
        max_seconds=max_seconds,
        threads=n_threads,
        device=device,
        backend="onnxruntime",
    )
