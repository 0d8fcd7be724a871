"""Investigation variants of the criteria benchmark (``criteria.py --variants``).

Why does (or doesn't) ``hessian`` beat ``magnitude`` and ``random`` one-shot? Two
checks, both on the benchmark's trained model and scoring batches:

1. **Ranking across groups.** ``cpd.prune`` ranks channels by score divided by the
   mean score of their group (``cpd.plan.select.ranking``). That removes every
   group's scale: what a Fisher score says about one group's channels costing more
   loss than another's is dropped; only the within-group shape is left. The paper
   divides by a cost instead (the layer's activation count). Variant rows rank by
   ``score / MACs of one channel of the group`` (the measured MACs drop when one
   channel of the group goes), otherwise the same selection.
2. **Single-channel fidelity.** For a few channels per group, the loss increase on the
   scoring data when that channel alone is removed (physically, as pruning does) is
   measured, and the Spearman correlation with each ranking key is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cpd.apply.apply import apply_plan
from cpd.plan.plan import Plan

__all__ = ["channel_costs", "per_mac_order", "run_variants", "spearman"]

PER_MAC = ("hessian", "hessian-batch", "taylor")


def channel_costs(scorer: Any) -> dict[int, float]:
    """Group id -> MACs fraction saved by removing one channel of the group."""
    return {g.id: max(1.0 - scorer.measure({g.id: list(range(1, g.size))}), 1e-12) for g in scorer.groups}


def per_mac_order(cost: dict[int, float]) -> Callable:
    def order(groups: list, scores: dict[int, Tensor]) -> list[tuple[int, int]]:
        rows = [(float(v) / cost[g.id], g.id, c) for g in groups for c, v in enumerate(scores[g.id].double().tolist())]
        rows.sort()
        return [(gid, c) for _, gid, c in rows]
    return order


def spearman(a: list[float], b: list[float]) -> float:
    ra = torch.tensor(a, dtype=torch.float64).argsort().argsort().double()
    rb = torch.tensor(b, dtype=torch.float64).argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@torch.no_grad()
def single_channel_losses(scorer: Any, batches: list, per_group: int, seed: int = 0) -> list[tuple[int, int, float]]:
    """``[(group, channel, loss increase summed over the scoring samples)]``."""
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss(m: torch.nn.Module) -> float:
        return float(F.cross_entropy(m.eval()(x), y, reduction="sum"))

    base = loss(scorer.model)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for g in scorer.groups:
        for c in torch.randperm(g.size, generator=gen)[:per_group].tolist():
            keep = {g.id: [i for i in range(g.size) if i != c]}
            out.append((g.id, c, loss(apply_plan(scorer.model, Plan.from_comb(scorer.comb, keep))) - base))
    return out


def run_variants(scorer: Any, scores: dict[str, dict[int, Tensor]], batches: list, cfg: dict[str, Any],
                 prune_eval: Callable, summarize: Callable, common: dict[str, Any],
                 log: Callable[[str], None], per_group: int = 6) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    cost = channel_costs(scorer)
    order = per_mac_order(cost)
    for label in PER_MAC:
        for t, v in prune_eval(scores[label], label, order=order).items():
            row = {**summarize(f"{label} (rank per MAC)", [v], t, common),
                   "variant": "rank by score / MACs of one channel instead of score / group mean"}
            rows.append(row)
            log(f"  {row['criterion']:24s} @ {t:.0%}: top-1 {row['metric']:6.2f} %  "
                f"(+BN recal {row['metric_bn_recal']:6.2f} %)  macs {row['macs']:.3f}")

    truth = single_channel_losses(scorer, batches, per_group)
    dl = [d for _, _, d in truth]
    dl_mac = [d / cost[g] for g, _, d in truth]
    for label, sc in [*scores.items(), ("random", scorer.criterion("random", seed=0).scores())]:
        raw = [float(sc[g][c]) for g, c, _ in truth]
        mean = [float(sc[g][c]) / (float(sc[g].abs().mean()) or 1.0) for g, c, _ in truth]
        mac = [r / cost[g] for r, (g, _, _) in zip(raw, truth)]
        rho = {"raw": spearman(raw, dl), "group_mean": spearman(mean, dl), "per_mac": spearman(mac, dl_mac),
               "group_mean_vs_per_mac": spearman(mean, dl_mac)}
        rows.append({**common, "criterion": label, "spearman": {k: round(v, 3) for k, v in rho.items()},
                     "channels": len(truth), "per_group": per_group})
        log(f"  single-channel Spearman {label:14s}: " + ", ".join(f"{k} {v:.2f}" for k, v in rho.items()))
    notes = ["Variant rows `... (rank per MAC)`: same scores, ranked by score / MACs of one channel of the "
             "group (the paper's cost normaliser) instead of `cpd.prune`'s score / group mean."]
    return rows, notes
