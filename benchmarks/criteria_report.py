"""Rows, verdicts and the markdown report of the criteria benchmark."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from criteria_models import DESCRIPTIONS

__all__ = ["markdown", "summarize", "verdicts", "write_atomic"]

FIXES = ("none", "mean", "var", "both", "recalibrate_bn", "mean_compensation")


def summarize(label: str, results: list[tuple[float, float, Any]], t: float, common: dict[str, Any]) -> dict[str, Any]:
    """One row from ``[(metric, metric_bn_recal, Pruned), ...]`` (several for random seeds)."""
    accs = [a for a, _, _ in results]
    recal = [b for _, b, _ in results]
    row = {**common, "criterion": label, "macs_target": t,
           "macs": round(sum(p.macs for _, _, p in results) / len(results), 4),
           "metric": round(sum(accs) / len(accs), 3), "metric_name": "top1",
           "metric_bn_recal": round(sum(recal) / len(recal), 3),
           "params": round(sum(p.params for _, _, p in results) / len(results), 4),
           "rolled_back": sorted({g for _, _, p in results for g in p.rolled_back})}
    if len(results) > 1:
        row.update(metric_std=round(statistics.stdev(accs), 3), metric_seeds=[round(a, 3) for a in accs],
                   metric_bn_recal_std=round(statistics.stdev(recal), 3),
                   metric_bn_recal_seeds=[round(a, 3) for a in recal],
                   macs_max=round(max(p.macs for _, _, p in results), 4))
    return row


def verdicts(rows: list[dict[str, Any]], targets: tuple[float, ...]) -> list[str]:
    out = []
    for t in targets:
        by = {r["criterion"]: r for r in rows if r.get("macs_target") == t and "variant" not in r}
        for key, what in (("metric", "after pruning"), ("metric_bn_recal", "with BN re-estimated")):
            h, m, r = by["hessian"][key], by["magnitude"][key], by["random"][key]
            ok = h > m and h > r
            out.append(f"{t:.0%} MACs, {what}: hessian {h:.2f} vs magnitude {m:.2f}, random {r:.2f} "
                       f"(± {by['random'].get(key + '_std', 0.0):.2f}) -> hessian beats both: "
                       f"{'yes' if ok else '**no**'}.")
    return out


def _cell(r: dict[str, Any] | None, key: str) -> str:
    if r is None or key not in r:
        return "—"
    std = f" ± {r[key + '_std']:.1f}" if key + "_std" in r else ""
    return f"{r[key]:.1f}{std}"


def _prune_table(rows: list[dict[str, Any]], targets: list[float], with_selection: bool) -> list[str]:
    labels = list(dict.fromkeys(r["criterion"] for r in rows))
    by = {(r["criterion"], r["macs_target"]): r for r in rows}
    head = "| criterion | " + ("selection | " if with_selection else "") + " | ".join(
        f"{t:.0%}: after pruning | BN re-estimated | MACs" for t in targets) + " |"
    lines = [head, "|---|" + ("---|" if with_selection else "") + "---:|---:|---:|" * len(targets)]
    for label in labels:
        first = by[(label, targets[0])] if (label, targets[0]) in by else next(r for r in rows if r["criterion"] == label)
        cells = [label] + ([first.get("selection", "")] if with_selection else [])
        for t in targets:
            r = by.get((label, t))
            cells += [_cell(r, "metric"), _cell(r, "metric_bn_recal"), f"{r['macs']:.1%}" if r else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    prune_rows = [r for r in rows if "macs_target" in r]
    main = [r for r in prune_rows if "variant" not in r and r["criterion"] != "unpruned"]
    variants = [r for r in prune_rows if "variant" in r]
    bn_rows = [r for r in rows if "bn_fix" in r]
    rho_rows = [r for r in rows if "spearman" in r]
    base = next(r for r in prune_rows if r["criterion"] == "unpruned")
    targets = sorted({r["macs_target"] for r in main}, reverse=True)
    train = f"{info['train_s']:.0f} s" if info.get("train_s") is not None else "loaded from a checkpoint"
    lines = [
        "# Criteria benchmark: one-shot pruning without fine-tuning",
        "",
        f"Model `{info['model']}` (`benchmarks/criteria_models.py`: {DESCRIPTIONS.get(info['model'], '')}; "
        f"{info['macs_m']:.1f} M MACs, {info['params_m']:.2f} M params per 32x32 patch), trained "
        f"{info['train_steps']} steps (batch {info['batch_size']}, AdamW, {train}) on CamVid scene patches "
        f"(`camvid_patches`, {info['train_n']} train patches). Metric: top-1 accuracy (%) on {info['test_n']} "
        f"test patches; unpruned **{base['metric']:.2f}** ({base['metric_bn_recal']:.2f} with BN re-estimated). "
        "Each criterion prunes the trained model once to each MACs target with `cpd.prune`'s selection "
        "(bisection on measured MACs); scoring data: "
        f"{info['score_batches']} batches of {info['score_batch_size']} train patches, the same for every "
        f"criterion. `random`: mean ± std over {info['seeds']} seeds.",
        "",
        "Two metrics, both with no weight update:",
        "",
        "- *after pruning*: the model `cpd.prune(..., recalibrate=False)` returns; also what `cpd.prune` "
        "returns for `magnitude`/`random` called without data. This is the issue's metric.",
        "- *BN re-estimated*: what `cpd.prune` returns by default when it is given data (`recalibrate=True`): "
        "the same pruned model with BatchNorm running statistics re-estimated on the scoring batches "
        "(forward passes only).",
        "",
        "*selection*: `hessian` ranks with the whole empirical Fisher of the channel masks (greedy, "
        "interactions included; `cpd/plan/select_fisher.py`), the default of `cpd.prune` for `hessian` with a "
        "MACs or parameter target; the other criteria rank by score / group mean.",
        "",
        *_prune_table(main, targets, True),
    ]
    if info.get("notes"):
        lines += ["", *[f"- {n}" for n in info["notes"]]]
    if variants:
        lines += ["", "## Investigation variants", "",
                  "Same model, scoring batches and metrics. `hessian, diagonal ...`: the per-sample hessian "
                  "scores (the diagonal of the empirical Fisher) ranked without interactions, as `cpd.prune` did "
                  "before, and with the normalisers of `cpd.scores.normalize_scores`. `steps=N`: `cpd.prune(steps=N, "
                  "recalibrate=False)`, which re-scores the masked model before each of N steps (N scoring passes, "
                  "no training; diagonal scores).", "",
                  *_prune_table(variants, targets, False)]
    if bn_rows:
        lines += ["", "## Stale BatchNorm statistics", "",
                  "Top-1 of the pruned model after correcting BN running statistics only (`benchmarks/criteria_bn.py`)"
                  ": *mean* / *var* / *both* set each BN's statistics to those of its actual input on the scoring "
                  "samples, layer by layer; *recalibrate_bn* is `cpd.prune`'s re-estimation; *mean compensation* "
                  "folds each removed channel's mean contribution (measured on the unpruned model: an upper bound "
                  "for a data-free estimate) into the next BN's running mean, one-shot.", "",
                  "| selection | target | " + " | ".join(FIXES) + " |", "|---|---:|" + "---:|" * len(FIXES)]
        for r in bn_rows:
            lines.append(f"| {r['criterion']} | {r['target']:.0%} | "
                         + " | ".join(f"{r['bn_fix'][k]:.1f}" for k in FIXES) + " |")
    if rho_rows:
        lines += ["", "## Single-channel fidelity", "",
                  "Spearman correlation between a criterion's ranking key and the measured loss increase when that "
                  f"one channel is removed (on the scoring data; {rho_rows[0]['channels']} channels, "
                  f"{rho_rows[0]['per_group']} per group). *raw*: the score; *group mean*: score / its group's mean; "
                  "*per MAC*: score / MACs of one channel, against loss increase / MACs. *calibration* (hessian): "
                  "median of measured loss increase / predicted `s_c / 2`.", "",
                  "| criterion | raw vs dL | group mean vs dL | per MAC vs dL/MAC | group mean vs dL/MAC | calibration |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in rho_rows:
            s = r["spearman"]
            cal = f"{r['calibration']:.2f}" if "calibration" in r else "—"
            lines.append(f"| {r['criterion']} | {s['raw']:.2f} | {s['group_mean']:.2f} | {s['per_mac']:.2f} | "
                         f"{s['group_mean_vs_per_mac']:.2f} | {cal} |")
    if info.get("findings"):
        lines += ["", "## Findings", "", *[f"- {n}" for n in info["findings"]]]
    lines += ["", f"Reproduce: `{info['command']}` ({info['total_s'] / 60:.1f} min on a shared 2-core CPU "
              "machine, one thread).", ""]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
