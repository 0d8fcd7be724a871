"""Investigation variants of the criteria benchmark (``criteria.py --variants``).

Same trained model, scoring batches, MACs targets and metrics as the main table.

1. **Ranking of the diagonal scores across groups.** The ``hessian`` scores
   ``s_c = sum_n g_{n,c}^2`` ranked as the library did before interaction-aware
   selection (score / group mean) and with the normalisers of
   :func:`cpd.scores.normalize_scores`: none (raw), group size, parameter elements per
   channel, MACs saved per channel (damped with exponent 0.5, and plain), plus raw
   ranking with ``max_ratio=0.5`` (no group loses more than half).
2. **Other scoring sets.** The interaction-aware and the diagonal ``hessian``
   selection on the main scoring set and ``resamples`` further disjoint sets of the
   same size (BN re-estimated on each set's own batches, as ``cpd.prune`` would):
   mean ± std over the sets, since one set's 50 % result varies by several points.
3. **Iterative scoring without training.** ``cpd.prune(steps=N, data=...)`` re-scores
   the masked model before each step (``IterativePruner``; diagonal scores, per-step
   group-mean ranking), so later steps see earlier removals. Not one-shot in the
   strict sense (N scoring passes), still no weight update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from criteria_prune import Pruned
from torch import Tensor

import cpd
from cpd.plan.select import ranking
from cpd.scores import global_ranking, param_cost

__all__ = ["channel_costs", "iterative_variants", "ranking_variants", "resample_variants"]

Order = list[tuple[int, int]]
Evaluate = Callable[[Any], tuple[float, float]]  # model -> (metric, metric after BN recalibration)


def channel_costs(scorer: Any) -> dict[int, float]:
    """Group id -> MACs fraction saved by removing one channel of the group."""
    return {g.id: max(1.0 - scorer.measure({g.id: list(range(1, g.size))}), 1e-12) for g in scorer.groups}


def _orders(scorer: Any, scores: dict[int, Tensor]) -> dict[str, tuple[Order, float, str]]:
    """label -> (channel order, max_ratio, description)."""
    g = scorer.groups
    macs = channel_costs(scorer)

    def by(**kw: Any) -> Order:
        return [(gid, c) for gid, c, _ in global_ranking(scores, g, **kw)]

    return {
        "hessian, diagonal / group mean (before)": (ranking(g, scores, by_group_mean=True), 0.95,
                                                    "score / its group's mean score (the previous cpd.prune ranking)"),
        "hessian, diagonal raw": (by(by="none"), 0.95, "raw score"),
        "hessian, diagonal raw, max_ratio 0.5": (by(by="none"), 0.5, "raw score, no group loses more than half"),
        "hessian, diagonal / group size": (by(by="size"), 0.95, "score / number of channels of the group"),
        "hessian, diagonal / params per channel": (by(by="none", cost=param_cost(scorer.model, g)), 0.95,
                                                   "score / parameter elements of one channel"),
        "hessian, diagonal / MACs^0.5": (by(by="none", cost={k: v ** 0.5 for k, v in macs.items()}), 0.95,
                                         "score / sqrt(MACs saved by one channel)"),
        "hessian, diagonal / MACs": (by(by="none", cost=macs), 0.95, "score / MACs saved by one channel"),
    }


def ranking_variants(scorer: Any, scores: dict[int, Tensor], targets: tuple[float, ...], evaluate: Evaluate,
                     summarize: Callable[..., dict[str, Any]], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rows for the diagonal ``hessian`` scores under every ranking of :func:`_orders`."""
    rows = []
    for label, (order, max_ratio, what) in _orders(scorer, scores).items():
        for t in targets:
            p = scorer.prune(scores, t, label, order=order, max_ratio=max_ratio)
            row = {**summarize(label, [(*evaluate(p.model), p)], t), "variant": what, "max_ratio": max_ratio}
            rows.append(row)
            log(f"  {label:42s} @ {t:.0%}: {row['metric']:6.2f} / {row['metric_bn_recal']:6.2f}")
    return rows


def resample_variants(scorer: Any, sets: list[list], targets: tuple[float, ...],
                      evaluate_with: Callable[[list], Evaluate], summarize: Callable[..., dict[str, Any]],
                      log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rows for the interaction-aware and the diagonal hessian selection, mean over scoring sets.

    Args:
        sets: disjoint scoring sets (lists of batches); the main one first.
        evaluate_with: batches -> the evaluation that re-estimates BN on those batches.
    """
    labels = {"hessian": True, "hessian, diagonal / group mean (before)": False}
    results: dict[tuple[str, float], list[tuple[float, float, Any]]] = {(lb, t): [] for lb in labels for t in targets}
    for i, batches in enumerate(sets):
        crit = scorer.criterion("hessian")
        for x, y in batches:
            crit.accumulate(scorer.model, x, y, F.cross_entropy)
        scores, rows = crit.scores(), crit.rows()
        evaluate = evaluate_with(batches)
        for label, interactions in labels.items():
            for t in targets:
                p = scorer.prune(scores, t, label, rows=rows if interactions else None)
                results[(label, t)].append((*evaluate(p.model), p))
                a, b, _ = results[(label, t)][-1]
                log(f"  scoring set {i}: {label:40s} @ {t:.0%}: {a:6.2f} / {b:6.2f}")
    return [{**summarize(f"{label}, {len(res)} scoring sets", res, t), "scoring_sets": len(res),
             "variant": f"mean ± std over {len(res)} disjoint scoring sets (the main one first)"}
            for (label, t), res in results.items()]


def iterative_variants(scorer: Any, batches: list, targets: tuple[float, ...], steps: tuple[int, ...],
                       evaluate: Evaluate, summarize: Callable[..., dict[str, Any]],
                       log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rows for ``cpd.prune(steps=N, recalibrate=False)`` with ``hessian`` and ``magnitude``."""
    rows = []
    for name in ("hessian", "magnitude"):
        for n in steps:
            label = f"{name}, steps={n} (re-scored, no training)"
            for t in targets:
                res = cpd.prune(scorer.model, scorer.example, macs=t, importance=name, data=batches,
                                loss_fn=F.cross_entropy, batches=len(batches), steps=n, recalibrate=False)
                p = _as_pruned(res)
                row = {**summarize(label, [(*evaluate(p.model), p)], t), "steps": n,
                       "variant": f"cpd.prune(steps={n}): {n} x {len(batches)} scoring batches on the masked model"}
                rows.append(row)
                log(f"  {label:42s} @ {t:.0%}: {row['metric']:6.2f} / {row['metric_bn_recal']:6.2f}"
                    f"  macs {row['macs']:.3f}")
    return rows


def _as_pruned(res: Any) -> Pruned:
    return Pruned(res.model, res.macs[1] / max(res.macs[0], 1), res.params[1] / max(res.params[0], 1),
                  res.plan.removed(), list(res.rolled_back), {int(g): list(k) for g, k in res.plan.keep.items()})
