"""Exporting a model to ONNX, atomically and verified.

Exporter: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``).
In torch 2.13 the default ``dynamo=True`` exporter needs the ``onnxscript``
package, which is not a dependency of cpd (nor of the ``cpd[onnx]`` extra), and
fails with ``ModuleNotFoundError`` without it. The TorchScript exporter ships with
torch, traces the model (so any Python control flow is fine as long as it does not
depend on tensor values), and handles a dynamic batch axis through
``dynamic_axes``. torch marks it deprecated; we silence that one warning because
using it is a deliberate choice, and leave tracer warnings visible. Because
tracing can bake a shape into the graph, :func:`export_onnx` verifies the file
at the example batch size *and* at another one before accepting it.

The model is wrapped so that the ONNX graph takes a flat list of tensors (named
after the example inputs: ``input``, ``input_0``..., or the dict keys such as
``pixel_values``) and returns a flat list of tensors (``output``, ``output_0``...,
or the keys of a dict / Hugging Face ``ModelOutput`` such as ``logits``).
Checking and timing the file with onnxruntime live in
:mod:`cpd.report.onnx_runtime`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cpd.inputs import (
    ExampleInputs,
    batch_size_of,
    call_model,
    evaluating,
    is_batched,
    iter_tensors,
    map_tensors,
    model_device,
    tensor_paths,
    to_device,
)
from cpd.report.atomic import atomic_path
from cpd.report.onnx_runtime import (
    _INSTALL_HINT,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    OnnxMismatchError,
    check_onnx,
    import_onnxruntime,
    time_onnx,
)

__all__ = ["DEFAULT_OPSET", "OnnxMismatchError", "check_onnx", "export_onnx", "time_onnx"]

#: Opset 17 has a native LayerNormalization and is supported by every
#: onnxruntime >= 1.14, so files run on older runtimes too.
DEFAULT_OPSET = 17


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    return onnx


class _FlatModule(nn.Module):
    """Wraps a model so that it takes and returns flat tuples of tensors.

    ``forward(*tensors)`` puts the tensors back into the structure of the example
    inputs (non-tensor values such as flags are kept as constants), calls the
    model, and returns its output tensors in :func:`iter_tensors` order.
    """

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs) -> None:
        super().__init__()
        self.model = model
        # Held in a list so that nn.Module does not treat a bare tensor as state.
        self._template = [example_inputs]

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        it = iter(tensors)
        inputs = map_tensors(lambda _: next(it), self._template[0])
        return tuple(iter_tensors(call_model(self.model, inputs)))


def _output_names(outputs: Any, input_names: list[str]) -> list[str]:
    names = tensor_paths(outputs, prefix="output")
    taken = set(input_names)
    # An output key equal to an input name would make an invalid graph.
    return [f"output_{n}" if n in taken else n for n in names]


def export_onnx(
    model: nn.Module,
    example_inputs: ExampleInputs,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    verify: bool = True,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> Path:
    """Export ``model`` to an ONNX file, atomically.

    The file is written to a temporary name next to ``path``, checked with
    ``onnx.checker`` and (``verify=True``) compared with PyTorch through
    onnxruntime; only then does it replace ``path``. If anything fails, an
    existing file at ``path`` is left untouched.

    Args:
        model: any ``nn.Module``; exported in eval mode (flags restored), on CPU
            or wherever it lives.
        example_inputs: tensor / tuple / mapping used for tracing, e.g. a
            ``(B, 3, H, W)`` batch or ``{"pixel_values": x}``.
        path: destination ``.onnx`` file; parent directories are created.
        opset: ONNX opset version.
        dynamic_batch: make dim 0 of every batched input and output dynamic.
        verify: compare with PyTorch on the example inputs, and (with
            ``dynamic_batch``) on a batch one larger, to prove the batch axis works.
        rtol, atol: tolerances for ``verify`` (see :func:`check_onnx`).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ImportError: onnx (or, with ``verify``, onnxruntime) is not installed.
        OnnxMismatchError: verification failed.
    """
    onnx = _import_onnx()
    if verify:
        import_onnxruntime()
    path = Path(path)
    ref = batch_size_of(example_inputs)
    inputs = to_device(example_inputs, model_device(model, example_inputs))
    flat = list(iter_tensors(inputs))
    input_names = tensor_paths(inputs, prefix="input")
    wrapper = _FlatModule(model, inputs)
    # The exporter ends with wrapper.train(<wrapper's old flag>), recursively;
    # keep that flag False so the model is not switched to training inside our
    # evaluating() block. Only the wrapper's own flag: .eval() would recurse and
    # clobber the model's flags before evaluating() records them.
    wrapper.training = False
    with evaluating(model), torch.no_grad():
        outputs = call_model(model, inputs)
    output_names = _output_names(outputs, input_names)
    dynamic_axes: dict[str, dict[int, str]] = {}
    if dynamic_batch:
        for name, t in zip(input_names, flat):
            if is_batched(t, ref):
                dynamic_axes[name] = {0: "batch"}
        for name, t in zip(output_names, iter_tensors(outputs)):
            if is_batched(t, ref):
                dynamic_axes[name] = {0: "batch"}

    with atomic_path(path) as tmp:
        with evaluating(model), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*feature will be removed.*", category=DeprecationWarning)
            torch.onnx.export(
                wrapper,
                tuple(flat),
                str(tmp),
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes or None,
                opset_version=opset,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(tmp))
        if verify:
            sizes = [ref, ref + 1] if dynamic_batch else [ref]
            check_onnx(tmp, model, example_inputs, batch_sizes=sizes, rtol=rtol, atol=atol)
    return path
