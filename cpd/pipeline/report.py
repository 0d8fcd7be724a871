"""Writing a pipeline run: the pruned model folder, JSON + Markdown report, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cpd.groups.indexing import new_size
from cpd.io.save import save_pruned
from cpd.pipeline.run import CPDResult
from cpd.report.atomic import atomic_path
from cpd.report.plots import plot_latency, plot_metric_vs_macs, plot_widths


def _widths(result: CPDResult) -> tuple[dict[str, int], dict[str, int]]:
    """Output width of every layer that owns a weight, before and after."""
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for name, trees in result.plan.dims.items():
        if name.endswith(".weight") and len(trees) >= 2:
            before[name[: -len(".weight")]] = trees[0].size
            after[name[: -len(".weight")]] = new_size(trees[0], result.plan.keep)
    return before, after


def table(result: CPDResult) -> Table:
    """The before/after table (metric, MACs, params, latency)."""
    b, p = result.baseline, result.pruned
    t = Table(title="Comb, Prune, Distill")
    for col in ("", "baseline", "cpd", "change"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row(result.metric_name, f"{b.metric:.2f}", f"{p.metric:.2f}", f"{p.metric - b.metric:+.2f}")
    t.add_row("MACs", f"{b.macs:,}", f"{p.macs:,}", f"{p.macs / max(b.macs, 1):.2f}x")
    t.add_row("params", f"{b.params:,}", f"{p.params:,}", f"{p.params / max(b.params, 1):.2f}x")
    for k in b.latency_ms:
        speed = b.latency_ms[k] / max(p.latency_ms.get(k, float("nan")), 1e-9)
        t.add_row(f"latency {k} (ms)", f"{b.latency_ms[k]:.2f}", f"{p.latency_ms[k]:.2f}",
                  f"{speed:.2f}x faster")
    return t


def write_report(out: Path, result: CPDResult, *, source: str, example_shape: tuple[int, ...],
                 title: str, console: Console | None = None) -> dict[str, Any]:
    """Save the model folder, ``report.json``, ``report.md`` and plots under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    save_pruned(out / "model", result.model, result.plan, source, example_shape,
                metrics={result.metric_name: round(result.pruned.metric, 4)},
                macs=(result.baseline.macs, result.pruned.macs),
                params=(result.baseline.params, result.pruned.params))
    with atomic_path(out / "report.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    hist = result.history
    # The curve: baseline, each pruning step (masked, before fine-tuning), final model.
    points = [(float(result.baseline.macs), result.baseline.metric, "baseline")]
    points += [(h["achieved"] * result.baseline.macs, h["metric"], f"step {int(h['step'])}")
               for h in hist if "metric" in h]
    points.append((float(result.pruned.macs), result.pruned.metric, "fine-tuned"))
    plot_metric_vs_macs([p[0] for p in points], [p[1] for p in points], out / "metric_vs_macs.png",
                        metric_name=result.metric_name, labels=[p[2] for p in points])
    before, after = _widths(result)
    plot_widths(before, after, out / "widths.png")
    plot_latency(result.baseline.latency_ms, result.pruned.latency_ms, out / "latency.png")
    b, p = result.baseline, result.pruned
    lines = [f"# {title}", "", "| | baseline | cpd |", "|---|---|---|",
             f"| {result.metric_name} | {b.metric:.2f} | {p.metric:.2f} |",
             f"| MACs | {b.macs:,} | {p.macs:,} ({p.macs / max(b.macs, 1):.2f}x) |",
             f"| params | {b.params:,} | {p.params:,} ({p.params / max(b.params, 1):.2f}x) |"]
    lines += [f"| latency {k} (ms) | {b.latency_ms[k]:.2f} | {p.latency_ms[k]:.2f} |" for k in b.latency_ms]
    lines += ["", "Pruning steps (target and achieved MACs fraction):", ""]
    lines += [f"- step {int(h['step'])}: goal {h['goal']:.3f}, achieved {h['achieved']:.3f}"
              + (f", {result.metric_name} {h['metric']:.2f} (masked, before fine-tuning)"
                 if "metric" in h else "") for h in hist]
    lines += ["", "![metric vs MACs](metric_vs_macs.png) ![widths](widths.png) ![latency](latency.png)", ""]
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text("\n".join(lines))
    (console or Console()).print(table(result))
    return summary
