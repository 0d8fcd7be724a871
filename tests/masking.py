"""Test helper: the dense model with a plan's removed channels zeroed (the mask)."""

from __future__ import annotations

import copy
import random

import torch
import torch.nn as nn

from cpd.groups.comb_result import CombResult


def masked(model: nn.Module, comb: CombResult, keep: dict[int, list[int]]) -> nn.Module:
    """A copy of ``model`` with every member position of every removed channel zeroed."""
    m = copy.deepcopy(model)
    tensors = dict(m.state_dict(keep_vars=True))
    with torch.no_grad():
        for gid, kept in keep.items():
            g = comb.group(gid)
            gone = [c for c in range(g.size) if c not in set(kept)]
            for mem in g.members:
                if not mem.is_param:
                    continue  # running stats of a zeroed BN channel do not matter
                t = tensors[mem.name]
                idx = torch.tensor([p for c in gone for p in mem.index[c]], dtype=torch.long)
                if len(idx):
                    t.index_fill_(mem.dim, idx, 0.0)
    return m


def random_keep(comb: CombResult, rng: random.Random, head_dim: bool = True) -> dict[int, list[int]]:
    """A random non-empty kept subset for every prunable group."""
    keep: dict[int, list[int]] = {}
    for g in comb.prunable(head_dim=head_dim):
        n = rng.randint(1, g.size)
        keep[g.id] = sorted(rng.sample(range(g.size), n))
    return keep


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics (eval mode uses them)."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 0.5)
    return model
