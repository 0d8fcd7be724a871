"""``random``: seeded uniform scores, a baseline that needs no data.

Channel ``c`` of group ``g`` scores ``U[0, 1)`` drawn from a generator seeded with a
mix of ``seed`` and the group id, so a group's scores depend only on ``(seed, group
id, size)``: not on the order of the groups, on other groups, or on how often
:meth:`scores` is called. Different seeds give different scores.

(The module is called ``rand`` rather than ``random`` so it never shadows the
standard library module.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from cpd.scores.base import Criterion
from cpd.scores.registry import register

__all__ = ["RandomCriterion"]

_MASK63 = (1 << 63) - 1


def _group_seed(seed: int, gid: int) -> int:
    # SplitMix64-style mixing: nearby (seed, gid) pairs give unrelated streams.
    x = (seed * 0x9E3779B97F4A7C15 + gid * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 29
    return x & _MASK63


@register("random")
class RandomCriterion(Criterion):
    """Uniform random scores.

    Args:
        seed: the seed; the same seed always gives the same scores.
    """

    requires_data = False

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def scores(self) -> dict[int, Tensor]:
        """Group id -> float64 tensor ``(size,)`` of ``U[0, 1)`` scores."""
        out: dict[int, Tensor] = {}
        for gid, plan in self.plans.items():
            gen = torch.Generator().manual_seed(_group_seed(self.seed, gid))
            out[gid] = torch.rand(plan.size, generator=gen, dtype=torch.float64)
        return out
