"""Single-channel fidelity of the criteria (``criteria.py --variants``).

For a few channels per group, the increase of the loss summed over the scoring
samples when that channel alone is removed (physically, as pruning does) is measured
and compared with each criterion's ranking key by Spearman correlation:

* ``raw``: the score;
* ``group_mean``: score / its group's mean score (the ranking for scores alone);
* ``per_mac``: score / MACs of one channel, against loss increase / MACs.

For ``hessian`` the scale is checked too: the per-sample empirical Fisher predicts a
loss increase of ``s_c / 2`` (summed over samples, whatever the loss reduction); the
row's ``calibration`` is the median of measured / predicted.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cpd.apply.apply import apply_plan
from cpd.plan.plan import Plan

__all__ = ["fidelity_rows", "single_channel_losses", "spearman"]


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


def fidelity_rows(scorer: Any, scores: dict[str, dict[int, Tensor]], batches: list, cost: dict[int, float],
                  common: dict[str, Any], per_group: int = 6) -> list[dict[str, Any]]:
    """One row per criterion with its Spearman correlations (and hessian's calibration)."""
    truth = single_channel_losses(scorer, batches, per_group)
    dl = [d for _, _, d in truth]
    dl_mac = [d / cost[g] for g, _, d in truth]
    rows = []
    for label, sc in scores.items():
        raw = [float(sc[g][c]) for g, c, _ in truth]
        mean = [float(sc[g][c]) / (float(sc[g].abs().mean()) or 1.0) for g, c, _ in truth]
        mac = [r / cost[g] for r, (g, _, _) in zip(raw, truth)]
        rho = {"raw": spearman(raw, dl), "group_mean": spearman(mean, dl), "per_mac": spearman(mac, dl_mac),
               "group_mean_vs_per_mac": spearman(mean, dl_mac)}
        row = {**common, "criterion": label, "spearman": {k: round(v, 3) for k, v in rho.items()},
               "channels": len(truth), "per_group": per_group}
        if label == "hessian":
            ratios = [d / (r / 2) for d, r in zip(dl, raw) if r > 0]
            row["calibration"] = round(statistics.median(ratios), 3)
        rows.append(row)
    return rows
