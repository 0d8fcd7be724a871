"""Report plots: metric vs MACs, kept width per layer, latency before / after.

Pure functions of plain Python data that write one PNG each, atomically. They
draw on a bare ``matplotlib.figure.Figure`` with the Agg canvas instead of going
through ``pyplot``: no global figure state, no GUI backend, and no
``matplotlib.use()`` call that would change the backend of a user's notebook.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cpd.report.atomic import atomic_path

_BEFORE = "#9aa5b1"
_AFTER = "#1f77b4"
_DPI = 120


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)


def _macs_scale(values: Sequence[float]) -> tuple[float, str]:
    """Divisor and unit so that MACs print as small numbers (GMACs for ImageNet)."""
    top = max((abs(v) for v in values), default=0.0)
    for div, unit in ((1e9, "GMACs"), (1e6, "MMACs"), (1e3, "KMACs")):
        if top >= div:
            return div, unit
    return 1.0, "MACs"


def plot_metric_vs_macs(
    macs: Sequence[float],
    metric: Sequence[float],
    path: str | os.PathLike[str],
    *,
    metric_name: str = "metric",
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Plot a quality metric against MACs over the pruning steps.

    Args:
        macs: MACs after each step, in step order (the first is usually the
            unpruned model).
        metric: the metric after each step (accuracy, mIoU...), same length.
        path: destination PNG.
        metric_name: y-axis label.
        labels: optional text per point (``"step 3"``, ``"50%"``).
        title: figure title.

    Returns:
        ``path`` as a ``Path``.
    """
    if len(macs) != len(metric):
        raise ValueError(f"macs has {len(macs)} values, metric {len(metric)}")
    if labels is not None and len(labels) != len(macs):
        raise ValueError(f"labels has {len(labels)} values, expected {len(macs)}")
    div, unit = _macs_scale(macs)
    xs = [m / div for m in macs]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    ax.plot(xs, list(metric), marker="o", color=_AFTER)
    if labels is not None:
        for x, y, text in zip(xs, metric, labels):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(unit)
    ax.set_ylabel(metric_name)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{metric_name} vs {unit}")
    return _save(fig, path)


def plot_widths(
    before: Mapping[str, int],
    after: Mapping[str, int],
    path: str | os.PathLike[str],
    *,
    title: str = "kept width per layer",
) -> Path:
    """Bar chart of each layer's width before and after pruning.

    Args:
        before: layer name -> channel count of the original model; its order
            is the bar order.
        after: layer name -> channel count after pruning; a layer missing here
            was removed entirely (drawn as 0). Layers only in ``after`` are
            appended.
        path: destination PNG.
        title: figure title.

    Returns:
        ``path`` as a ``Path``.
    """
    names = list(before) + [n for n in after if n not in before]
    if not names:
        raise ValueError("no layers to plot")
    b = [before.get(n, 0) for n in names]
    a = [after.get(n, 0) for n in names]
    # Width grows with the layer count so that ResNet-50's ~50 groups stay legible.
    fig = Figure(figsize=(max(6.0, 0.28 * len(names) + 2.0), 4.5))
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], b, width=0.4, color=_BEFORE, label="before")
    ax.bar([x + 0.2 for x in xs], a, width=0.4, color=_AFTER, label="after")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    total_b, total_a = sum(b), sum(a)
    kept = f" ({100.0 * total_a / total_b:.0f}% kept)" if total_b else ""
    ax.set_title(title + kept)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_latency(
    before: float | Mapping[str, float],
    after: float | Mapping[str, float],
    path: str | os.PathLike[str],
    *,
    unit: str = "ms",
    title: str = "latency",
) -> Path:
    """Bar chart of latency before and after pruning, with the speed-up.

    Args:
        before: latency of the original model, or setting -> latency (e.g.
            ``{"torch b1": 25.0, "onnx b8": 120.0}``).
        after: the same for the pruned model, with the same settings.
        path: destination PNG.
        unit: y-axis unit label.
        title: figure title.

    Returns:
        ``path`` as a ``Path``.
    """
    if isinstance(before, Mapping) != isinstance(after, Mapping):
        raise TypeError("before and after must both be numbers or both be mappings")
    b = dict(before) if isinstance(before, Mapping) else {"": float(before)}
    a = dict(after) if isinstance(after, Mapping) else {"": float(after)}
    if set(b) != set(a):
        raise ValueError(f"settings differ: {sorted(b)} vs {sorted(a)}")
    if not b:
        raise ValueError("no latencies to plot")
    names = list(b)
    fig = Figure(figsize=(max(4.0, 1.6 * len(names) + 1.5), 4.0))
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [b[n] for n in names], width=0.4, color=_BEFORE, label="before")
    bars = ax.bar([x + 0.2 for x in xs], [a[n] for n in names], width=0.4, color=_AFTER, label="after")
    for bar, n in zip(bars, names):
        if a[n] > 0:
            ax.annotate(
                f"{b[n] / a[n]:.2f}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=9,
            )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel(f"latency ({unit})")
    ax.set_ylim(0, max(max(b.values()), max(a.values())) * 1.15 or 1.0)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)
