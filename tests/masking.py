"""Test helper: the dense model with a plan's removed channels zeroed (the mask)."""

from __future__ import annotations

import copy
import random

import torch
import torch.nn as nn

from cpd.apply.mask import removed_positions, zero_channels
from cpd.groups.comb_result import CombResult


def masked(model: nn.Module, comb: CombResult, keep: dict[int, list[int]]) -> nn.Module:
    """A copy of ``model`` with every member position of every removed channel zeroed."""
    m = copy.deepcopy(model)
    zero_channels(m, removed_positions(comb, keep))
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


def built(cls: type) -> nn.Module:
    """A micro-zoo model (seed 0, random BatchNorm statistics, eval mode) after one
    forward on ``micro_zoo.example()``, as users call comb on a model that has run
    (it fills CachedScale's cache)."""
    from micro_zoo import example

    torch.manual_seed(0)
    m = randomize_bn(cls()).eval()
    with torch.no_grad():
        m(example())
    return m
