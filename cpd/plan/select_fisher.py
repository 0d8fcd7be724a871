"""Greedy channel removal under the whole empirical Fisher, interactions included.

With ``g_n`` the mask-gradient row of sample ``n`` (``(C,)``, all groups side by
side), the second-order model of the loss increase when the set ``S`` of channels
is removed (every mask in ``S`` goes from 1 to 0) is

    dL(S) = 1/2 * sum_n (sum_{c in S} g_{n,c})^2 = 1/2 * 1_S^T F 1_S,   F = sum_n g_n g_n^T.

Ranking by the diagonal ``F_cc`` (the ``hessian`` scores) assumes the removals add
up independently. They do not: channels whose removal shifts the next layers the
same way (the same sign of ``g_{n,c}`` on the same samples) compound, and one-shot
pruning of 30-50 % of the MACs removes hundreds of them at once. On the CamVid
criteria benchmark (``benchmarks/criteria.py``, unpruned 80 % top-1) diagonal ranking
leaves 42 % / 31 % top-1 right after pruning to 70 % / 50 % MACs (mean of five
scoring sets); greedy removal under the whole ``F`` keeps 78 % / 62 %, without
re-estimating BatchNorm statistics (with them re-estimated: 78 % / 68 % against
78 % / 65 %).

:func:`fisher_order` removes, one channel at a time, the channel whose removal
increases ``dL`` the least given everything removed before it:

    marginal(c | S) = 1/2 F_cc + sum_{c' in S} F_{c'c}.

Only the rows of ``F`` of removed channels are ever needed (``F`` itself, ``C x C``,
is never formed): they are computed for a pool of the next candidates in one matrix
product, and one at a time when the greedy choice falls outside the pool. The order
is the exact greedy order; the cost is at most about ``r * C`` per removed channel
(``r`` rows), which is why :func:`cpd.plan.select.select_fisher_global` builds the
order only as far as the target needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor

from cpd.groups.group import Group

__all__ = ["POOL", "fisher_order"]

#: candidates whose rows of F are computed together (one matrix product)
POOL = 256


def fisher_order(
    groups: list[Group], rows: Mapping[int, Tensor], limits: Mapping[int, int], pool: int = POOL,
) -> Iterator[tuple[int, int]]:
    """Yield ``(group id, channel)`` in greedy removal order.

    Args:
        groups: the groups to choose from (column order of the rows).
        rows: group id -> ``(r, size)`` mask-gradient rows (exact or sketched); the
            same ``r`` for every group.
        limits: group id -> how many of its channels may go at most; a group stops
            being a candidate once its limit is reached, and the model ``dL`` counts
            only channels that are yielded.
        pool: candidates per block of ``F`` rows.

    Yields:
        Each channel at most once; channels beyond their group's limit never.
        Ties go to the earlier group, then the lower channel.
    """
    if not groups:
        return
    cols = [(g.id, c) for g in groups for c in range(g.size)]
    owner = torch.tensor([i for i, g in enumerate(groups) for _ in range(g.size)])
    m = torch.cat([rows[g.id].detach().to("cpu", torch.float32) for g in groups], dim=1)  # (r, C)
    # float64 for the running sums: hundreds of additions of terms of mixed sign.
    # Channels that may not (or no longer) go have an infinite marginal.
    marginal = 0.5 * m.double().square().sum(0)
    left = [int(limits.get(g.id, 0)) for g in groups]
    marginal[torch.tensor([left[int(i)] <= 0 for i in owner])] = float("inf")
    block = torch.zeros(0, m.shape[1])  # rows of F of the pooled candidates, (P, C)
    slot: dict[int, int] = {}
    misses = pool // 4  # start with a pool
    for _ in range(len(cols)):
        c = int(marginal.argmin())
        if marginal[c] == float("inf"):
            return
        if c in slot:
            row = block[slot[c]]
        elif misses < pool // 4:
            # The pool's guess missed: this one row alone (a matrix-vector product).
            row = m[:, c] @ m
            misses += 1
        else:  # too many misses: pool the current best candidates (one matrix product)
            alive = int((marginal < float("inf")).sum())
            cand = marginal.topk(min(pool, alive), largest=False).indices
            block = m[:, cand].T @ m  # F[cand, :]
            slot = {int(j): i for i, j in enumerate(cand)}
            row, misses = block[slot[c]], 0
        yield cols[c]
        marginal += row.double()
        marginal[c] = float("inf")
        gi = int(owner[c])
        left[gi] -= 1
        if left[gi] == 0:
            marginal[owner == gi] = float("inf")
