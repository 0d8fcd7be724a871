"""Measuring models: MACs and parameters, latency, ONNX export and timing, plots.

Names are loaded lazily (PEP 562) so that ``import cpd.report`` costs nothing
beyond torch: matplotlib is imported on the first plot, and ``onnx`` /
``onnxruntime`` (the optional ``cpd[onnx]`` extra) on the first ONNX call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpd.report.counting import count, count_by_module, count_params
    from cpd.report.latency import (
        Latency,
        measure_latency,
        time_callable,
        torch_threads,
    )
    from cpd.report.onnx_export import export_onnx
    from cpd.report.onnx_runtime import OnnxMismatchError, check_onnx, time_onnx
    from cpd.report.plots import plot_latency, plot_metric_vs_macs, plot_widths

_WHERE = {
    "count": "counting",
    "count_by_module": "counting",
    "count_params": "counting",
    "Latency": "latency",
    "measure_latency": "latency",
    "time_callable": "latency",
    "torch_threads": "latency",
    "OnnxMismatchError": "onnx_runtime",
    "check_onnx": "onnx_runtime",
    "export_onnx": "onnx_export",
    "time_onnx": "onnx_runtime",
    "plot_latency": "plots",
    "plot_metric_vs_macs": "plots",
    "plot_widths": "plots",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cpd.report.{_WHERE[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
