"""Make scores of different groups comparable, and rank channels globally.

A raw score sums over every parameter element of a channel, so groups with wide
channels (a head owns ``head_dim`` positions) or many members collect larger scores
than a plain channel for the same per-element importance. Before ranking channels
of different groups against each other, divide:

* ``by="width"`` (default): by the group's channel width, the positions per channel
  (``max(member.width)`` over parameter members: 1 for plain channels, ``head_dim``
  for heads);
* ``by="size"``: by the group's size (its number of channels);
* ``by="none"``: not at all;

and optionally by a per-channel ``cost`` (group id -> cost of one channel, e.g. the
MACs or parameters removing it saves; :func:`param_cost` gives the parameter count).
Dividing by a cost ranks by importance per unit saved, as the authors divide by the
layer's activation count.

None of these makes diagonal loss-change scores (``hessian``) safe to rank across
groups for one-shot pruning: on the CamVid criteria benchmark
(``benchmarks/criteria.py --variants``), ranking the per-sample hessian scores raw,
per channel of the group (``by="size"``), per parameter element (:func:`param_cost`)
or per MAC (plain or with exponent 0.5) gave 57-60 % top-1 at 70 % MACs and 4-14 %
at 50 %, against 48 % / 22 % for score / group mean and 78 % / 62 % for the
interaction-aware selection of :mod:`cpd.plan.select_fisher` (unpruned 80 %, no
fine-tuning, no BatchNorm re-estimation). The scores are right about single
channels; what they miss is how removals interact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from cpd.groups.group import Group

__all__ = ["Normalizer", "channel_width", "param_cost", "normalize_scores", "global_ranking"]

Normalizer = Literal["none", "size", "width"]


def channel_width(group: Group) -> int:
    """Positions per channel: the largest ``width`` among parameter members (1 if none)."""
    return max((m.width for m in group.params()), default=1) or 1


def param_cost(model: nn.Module, groups: Iterable[Group]) -> dict[int, float]:
    """Parameter elements removed with one channel of each group (a ready-made cost).

    For a member of shape ``S`` and width ``k`` that is ``k * prod(S) / S[dim]``,
    summed over the group's parameter members (buffers excluded).
    """
    shapes = {k: tuple(v.shape) for k, v in model.named_parameters(remove_duplicate=False)}
    out: dict[int, float] = {}
    for g in groups:
        total = 0
        for m in g.params():
            shape = shapes[m.name]
            total += m.width * (torch.Size(shape).numel() // shape[m.dim])
        out[g.id] = float(total)
    return out


def normalize_scores(
    scores: Mapping[int, Tensor],
    groups: Iterable[Group],
    *,
    by: Normalizer = "width",
    cost: Mapping[int, float] | None = None,
) -> dict[int, Tensor]:
    """Divide each group's scores by its normaliser and optional per-channel cost.

    Args:
        scores: group id -> tensor ``(size,)``.
        groups: the groups the scores belong to (every id in ``scores`` must appear).
        by: ``"width"``, ``"size"`` or ``"none"`` (see module docstring).
        cost: group id -> positive cost of one channel; groups absent from it are not
            divided by a cost.

    Returns:
        group id -> float64 tensor ``(size,)``.
    """
    if by not in ("none", "size", "width"):
        raise ValueError(f"by must be 'none', 'size' or 'width', got {by!r}")
    by_id = {g.id: g for g in groups}
    out: dict[int, Tensor] = {}
    for gid, s in scores.items():
        if gid not in by_id:
            raise ValueError(f"scores for group {gid}, which is not among the groups")
        g = by_id[gid]
        div = {"none": 1.0, "size": float(max(g.size, 1)), "width": float(channel_width(g))}[by]
        if cost is not None and gid in cost:
            if not cost[gid] > 0:
                raise ValueError(f"cost of group {gid} must be > 0, got {cost[gid]}")
            div *= float(cost[gid])
        out[gid] = s.to(torch.float64) / div
    return out


def global_ranking(
    scores: Mapping[int, Tensor],
    groups: Iterable[Group],
    *,
    by: Normalizer = "width",
    cost: Mapping[int, float] | None = None,
    prunable_only: bool = True,
) -> list[tuple[int, int, float]]:
    """All channels of all groups, least important first.

    Args:
        scores, groups, by, cost: as :func:`normalize_scores`.
        prunable_only: leave out groups with ``prunable=False``.

    Returns:
        ``[(group id, channel, normalised score), ...]`` sorted by score ascending;
        ties broken by group id, then channel, so the order is deterministic.
    """
    groups = list(groups)
    frozen = {g.id for g in groups if not g.prunable} if prunable_only else set()
    normed = normalize_scores(scores, groups, by=by, cost=cost)
    rows = [
        (gid, c, float(v))
        for gid, s in normed.items()
        if gid not in frozen
        for c, v in enumerate(s.tolist())
    ]
    rows.sort(key=lambda r: (r[2], r[0], r[1]))
    return rows
