"""Simulated pruning: zero the removed channels in place instead of slicing them.

During iterative pruning inside training (as the paper does) the architecture stays
dense and removed channels are held at zero; the physical removal happens once at
the end. Zeroing every parameter position of a channel in every member of its
group gives exactly the pruned model's function wherever no normalisation runs
across the pruned dimension (BatchNorm in eval is per channel; LayerNorm is not).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cpd.groups.comb_result import CombResult


def removed_positions(comb: CombResult, keep: dict[int, list[int]]) -> dict[tuple[str, int], torch.Tensor]:
    """(parameter name, dim) -> positions to zero, for every removed channel."""
    out: dict[tuple[str, int], list[int]] = {}
    for gid, kept in keep.items():
        g = comb.group(gid)
        kept_set = set(kept)
        gone = [c for c in range(g.size) if c not in kept_set]
        for mem in g.members:
            if mem.is_param and gone:
                out.setdefault((mem.name, mem.dim), []).extend(p for c in gone for p in mem.index[c])
    return {k: torch.tensor(sorted(set(v)), dtype=torch.long) for k, v in out.items()}


@torch.no_grad()
def zero_channels(model: nn.Module, positions: dict[tuple[str, int], torch.Tensor]) -> None:
    """Zero ``positions`` (from :func:`removed_positions`) in ``model``'s parameters, in place.

    Call it after every optimizer step so that removed channels stay removed.
    """
    params = dict(model.named_parameters())
    for (name, dim), idx in positions.items():
        p = params.get(name)
        if p is not None:
            p.index_fill_(dim, idx.to(p.device), 0.0)
