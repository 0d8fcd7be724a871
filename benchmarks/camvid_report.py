"""Tables, verdicts and the plot of the CamVid benchmark (benchmarks/camvid.py)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cpd.report.atomic import atomic_path

__all__ = ["verdicts", "paired", "markdown", "plot", "METRIC_LABEL"]

METRIC_LABEL = {"miou": "mIoU (%)", "top1": "top-1 (%)"}
BASELINES = ("cpd-no-kd", "tp-magnitude", "tp-taylor")
MAX_DROP = 2.0  # points the issue allows cpd to lose against the unpruned model
_STYLE = {"baseline": ("black", "*"), "cpd": ("tab:blue", "o"), "cpd-no-kd": ("tab:cyan", "s"),
          "tp-magnitude": ("tab:orange", "^"), "tp-taylor": ("tab:red", "v")}


def _models(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["model"], r["task"]) for r in rows))


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model: does cpd beat every baseline that ran, within 2 points of the unpruned?"""
    out = []
    for model, task in _models(rows):
        by = {r["method"]: r for r in rows if (r["model"], r["task"]) == (model, task)}
        base, cpd = by.get("baseline"), by.get("cpd")
        if base is None or cpd is None or cpd.get("metric") is None:
            out.append(f"{model} ({task}): incomplete (cpd or baseline row missing or failed).")
            continue
        ran = {m: by[m]["metric"] for m in BASELINES if m in by and by[m].get("metric") is not None}
        failed = [m for m in BASELINES if m in by and by[m].get("metric") is None]
        beats = all(cpd["metric"] > v for v in ran.values())
        drop = base["metric"] - cpd["metric"]
        others = ", ".join(f"{m} {v:.2f}" for m, v in ran.items()) or "none ran"
        fail = f"; could not run: {', '.join(failed)}" if failed else ""
        # the margin next to the seed spread says whether a win or loss is more than noise
        stds = [r.get("metric_std") or 0.0 for r in by.values() if r.get("metric") is not None]
        margin = f" (margin {cpd['metric'] - max(ran.values()):+.2f}, seed std up to {max(stds):.2f})" if ran else ""
        out.append(f"{model} ({task}): cpd {cpd['metric']:.2f} at {cpd['macs']:.3f} MACs vs {others}{fail} -> "
                   f"beats every baseline that ran: {'yes' if beats else '**no**'}{margin}; "
                   f"{'loss' if drop >= 0 else 'gain'} vs unpruned {abs(drop):.2f} points -> within "
                   f"{MAX_DROP:.0f}: {'yes' if drop <= MAX_DROP else '**no**'}.")
    return out


def paired(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model: cpd minus each baseline, paired by fine-tuning seed.

    Seed ``i`` of every method fine-tunes with the same data order, so the per-seed
    differences cancel most of the seed noise. Reported as mean +- standard error
    (sample std / sqrt(n)); a baseline with other seeds, or one seed, is left out.
    """
    out = []
    for model, _ in _models(rows):
        by = {r["method"]: r for r in rows if r["model"] == model and r.get("metric") is not None}
        cpd = by.get("cpd")
        if cpd is None or len(cpd.get("metric_seeds") or []) < 2:
            continue
        parts = []
        for m in BASELINES:
            other = by.get(m)
            if other is None or other.get("ft_seeds") != cpd.get("ft_seeds"):
                continue
            d = [a - b for a, b in zip(cpd["metric_seeds"], other["metric_seeds"], strict=True)]
            se = statistics.stdev(d) / math.sqrt(len(d))
            parts.append(f"{m} {statistics.mean(d):+.2f} ± {se:.2f}")
        if parts:
            out.append(f"{model}, cpd minus ({len(cpd['metric_seeds'])} seeds): " + ", ".join(parts))
    return out


def _fmt(v: Any, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The results page: setup, one table per task, verdicts, failures, how to reproduce."""
    target = info.get("target", 0.5)
    lines = [f"# CamVid benchmark: Comb-Prune-Distill against baselines at {target:.0%} MACs", "", *info["setup"], ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        trows = [r for r in rows if r["task"] == task]
        label = METRIC_LABEL.get(trows[0].get("metric_name", ""), "metric")
        lines += [f"## {task}", "", f"| model | method | {label} | Δ vs unpruned | MACs | params | "
                  "latency bs1 (ms) | latency bs8 (ms) | speed-up bs1 / bs8 |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for model, _ in _models(trows):
            by = {r["method"]: r for r in trows if r["model"] == model}
            base = by.get("baseline")
            for method in ("baseline", "cpd", *BASELINES):
                r = by.get(method)
                if r is None:
                    continue
                if r.get("metric") is None:
                    lines.append(f"| {model} | {method} | failed: {r.get('error', '?')} | | | | | | |")
                    continue
                delta = r["metric"] - base["metric"] if base and base.get("metric") is not None else None
                # speed-up against the baseline timed in alternation with this model (same load)
                b1 = r.get("base_latency_ms_bs1") or (base or {}).get("latency_ms_bs1")
                b8 = r.get("base_latency_ms_bs8") or (base or {}).get("latency_ms_bs8")
                speed = (f"{b1 / r['latency_ms_bs1']:.2f}x / {b8 / r['latency_ms_bs8']:.2f}x"
                         if b1 and b8 else "—")
                name = f"**{method}**" if method == "cpd" else method
                spread = f" ± {r['metric_std']:.2f}" if len(r.get("metric_seeds") or []) > 1 else ""
                lines.append(f"| {model} | {name} | {r['metric']:.2f}{spread} | {_fmt(delta, '+.2f')} | "
                             f"{r['macs']:.3f} | {r['params']:.3f} | {r['latency_ms_bs1']:.2f} | "
                             f"{r['latency_ms_bs8']:.2f} | {speed} |")
        lines.append("")
    lines += ["## Verdicts", "", *[f"- {v}" for v in verdicts(rows)], ""]
    margins = paired(rows)
    if margins:
        lines += ["## Paired by seed", "", "Metric differences per fine-tuning seed, mean ± standard error; a "
                  "margin within about two standard errors of zero is not a measured difference.", "",
                  *[f"- {v}" for v in margins], ""]
    if info.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in info["notes"]], ""]
    lines += [f"Reproduce: `{info['command']}` ({info['minutes']:.0f} min of compute on a shared 2-core CPU machine, "
              "one thread; finished rows are cached and skipped on a re-run, `--fresh` redoes them).", ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Metric against MACs fraction, one panel per model; cpd's masked pruning steps as a line."""
    models = _models(rows)
    ncols = min(2, max(1, len(models)))
    nrows = -(-max(1, len(models)) // ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.9 * nrows))
    for i, (model, task) in enumerate(models):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        mrows = [r for r in rows if (r["model"], r["task"]) == (model, task)]
        for r in mrows:
            if r.get("metric") is None:
                continue
            color, marker = _STYLE.get(r["method"], ("gray", "x"))
            ax.scatter([r["macs"]], [r["metric"]], color=color, marker=marker, s=60, label=r["method"], zorder=3)
        cpd = next((r for r in mrows if r["method"] == "cpd" and r.get("history")), None)
        base = next((r for r in mrows if r["method"] == "baseline" and r.get("metric") is not None), None)
        if cpd is not None and base is not None and all("metric" in h for h in cpd["history"]):
            xs = [1.0] + [h["achieved"] for h in cpd["history"]]
            ys = [base["metric"]] + [h["metric"] for h in cpd["history"]]
            ax.plot(xs, ys, color=_STYLE["cpd"][0], alpha=0.4, linestyle="--", label="cpd while pruning (masked)")
        metric = METRIC_LABEL.get(mrows[0].get("metric_name", ""), "metric")
        ax.set_title(f"{model} ({task})", fontsize=10)
        ax.set_xlabel("MACs (fraction of unpruned)")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)
