"""Writing a pipeline run: the pruned model folder, JSON + Markdown report, plots.

:func:`write_report` saves the model and calls :func:`render_report`, which needs
only the summary dict (what ``report.json`` holds) and the plan: ``cpd report RUN``
re-renders a finished run from its files with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cpd.groups.indexing import new_size
from cpd.io.inputs import InputSpec
from cpd.io.save import save_pruned
from cpd.pipeline.run import CPDResult
from cpd.plan.plan import Plan
from cpd.report.atomic import atomic_path
from cpd.report.plots import plot_latency, plot_metric_vs_macs, plot_widths

__all__ = ["render_report", "summary_table", "table", "write_report"]


def _widths(plan: Plan) -> tuple[dict[str, int], dict[str, int]]:
    """Output width of every layer that owns a weight, before and after."""
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for name, trees in plan.dims.items():
        if name.endswith(".weight") and len(trees) >= 2:
            before[name[: -len(".weight")]] = trees[0].size
            after[name[: -len(".weight")]] = new_size(trees[0], plan.keep)
    return before, after


def _latency_rows(s: dict[str, Any]) -> list[tuple[str, float, float]]:
    """``(label, baseline ms, pruned ms)``: PyTorch latencies, then onnxruntime ones if timed."""
    b, p = s["baseline"]["latency_ms"], s["pruned"]["latency_ms"]
    rows = [(f"latency {k} (ms)", b[k], p[k]) for k in b if k in p]
    onnx = s.get("onnx") or {}
    ob, op = onnx.get("baseline_latency_ms") or {}, onnx.get("latency_ms") or {}
    rows += [(f"onnxruntime {k} (ms)", ob[k], op[k]) for k in ob if k in op]
    return rows


def summary_table(s: dict[str, Any]) -> Table:
    """The before/after table (metric, MACs, params, latency) of a ``report.json`` summary."""
    b, p = s["baseline"], s["pruned"]
    t = Table(title="Comb, Prune, Distill")
    for col in ("", "baseline", "cpd", "change"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row(s["metric"], f"{b['metric']:.2f}", f"{p['metric']:.2f}", f"{p['metric'] - b['metric']:+.2f}")
    t.add_row("MACs", f"{b['macs']:,}", f"{p['macs']:,}", f"{p['macs'] / max(b['macs'], 1):.2f}x")
    t.add_row("params", f"{b['params']:,}", f"{p['params']:,}", f"{p['params'] / max(b['params'], 1):.2f}x")
    for label, before, after in _latency_rows(s):
        speed = before / max(after, 1e-9)
        change = f"{speed:.2f}x faster" if speed >= 1 else f"{1 / max(speed, 1e-9):.2f}x slower"
        t.add_row(label, f"{before:.2f}", f"{after:.2f}", change)
    return t


def table(result: CPDResult) -> Table:
    """The before/after table (metric, MACs, params, latency)."""
    return summary_table(result.summary())


def _markdown(s: dict[str, Any], title: str, widths: bool) -> str:
    b, p, name = s["baseline"], s["pruned"], s["metric"]
    lines = [f"# {title}", "", "| | baseline | cpd |", "|---|---|---|",
             f"| {name} | {b['metric']:.2f} | {p['metric']:.2f} |",
             f"| MACs | {b['macs']:,} | {p['macs']:,} ({p['macs'] / max(b['macs'], 1):.2f}x) |",
             f"| params | {b['params']:,} | {p['params']:,} ({p['params'] / max(b['params'], 1):.2f}x) |"]
    lines += [f"| {label} | {before:.2f} | {after:.2f} |" for label, before, after in _latency_rows(s)]
    lines += ["", "Pruning steps (target and achieved MACs fraction):", ""]
    lines += [f"- step {int(h['step'])}: goal {h['goal']:.3f}, achieved {h['achieved']:.3f}"
              + (f", {name} {h['metric']:.2f} (masked, before fine-tuning)" if "metric" in h else "")
              for h in s["history"]]
    images = "![metric vs MACs](metric_vs_macs.png)" + (" ![widths](widths.png)" if widths else "")
    lines += ["", images + " ![latency](latency.png)", ""]
    return "\n".join(lines)


def render_report(out: Path, summary: dict[str, Any], *, title: str, plan: Plan | None = None,
                  console: Console | None = None) -> None:
    """Write ``report.json``, ``report.md`` and the plots under ``out``; print the table.

    Args:
        out: the run folder.
        summary: :meth:`CPDResult.summary` (plus any extra keys, e.g. ``"onnx"``).
        title: heading of ``report.md`` (stored in ``report.json`` as ``"title"``).
        plan: the plan, for the layer-width plot (skipped without it).
        console: where the table goes (default: a new rich console).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary["title"] = title
    with atomic_path(out / "report.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    b, p = summary["baseline"], summary["pruned"]
    # The curve: baseline, each pruning step (masked, before fine-tuning), final model.
    points = [(float(b["macs"]), b["metric"], "baseline")]
    points += [(h["achieved"] * b["macs"], h["metric"], f"step {int(h['step'])}")
               for h in summary["history"] if "metric" in h]
    points.append((float(p["macs"]), p["metric"], "fine-tuned"))
    plot_metric_vs_macs([q[0] for q in points], [q[1] for q in points], out / "metric_vs_macs.png",
                        metric_name=summary["metric"], labels=[q[2] for q in points])
    if plan is not None:
        plot_widths(*_widths(plan), out / "widths.png")
    rows = [(r[0].removeprefix("latency ").removesuffix(" (ms)"), r[1], r[2])
            for r in _latency_rows(summary)]  # "bs1", "onnxruntime bs1"
    plot_latency({r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}, out / "latency.png")
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text(_markdown(summary, title, widths=plan is not None))
    (console or Console()).print(summary_table(summary))


def write_report(out: Path, result: CPDResult, *, source: str,
                 example_shape: tuple[int, ...] | InputSpec, title: str,
                 console: Console | None = None, base_plans: Sequence[Plan] = (),
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save the model folder, ``report.json``, ``report.md`` and plots under ``out``.

    Args:
        out: the run folder; the model goes to ``out/model``.
        result: what :func:`~cpd.pipeline.run.run_cpd` returned.
        source: model string of the original architecture.
        example_shape: the example input's shape, or its :class:`InputSpec`.
        title: heading of ``report.md``.
        console: where the table goes.
        base_plans: plans already applied to ``source`` (a model loaded from a cpd folder).
        extra: more JSON keys for ``report.json`` (e.g. ``"onnx"``, ``"config"``).

    Returns:
        The summary written to ``report.json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**result.summary(), **(extra or {})}
    save_pruned(out / "model", result.model, result.plan, source, example_shape,
                metrics={result.metric_name: round(result.pruned.metric, 4)},
                base_plans=base_plans,
                macs=(result.baseline.macs, result.pruned.macs),
                params=(result.baseline.params, result.pruned.params))
    render_report(out, summary, title=title, plan=result.plan, console=console)
    return summary
