"""``magnitude``: weight norm of a channel; needs no data.

    s_c = ( sum_{i in c} |w_i|^p )^(1/p)

over every parameter element of channel ``c`` in every parameter member of the group
(``p=1`` by default, ``p=2`` for the L2 norm). The weights are read from the model
passed to :meth:`~cpd.scores.base.Criterion.prepare` when :meth:`scores` is called,
so the scores follow training; ``accumulate*`` calls are accepted and ignored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cpd.scores.base import Criterion
from cpd.scores.channels import channel_sum
from cpd.scores.registry import register

__all__ = ["MagnitudeCriterion"]


@register("magnitude")
class MagnitudeCriterion(Criterion):
    """L_p norm of each channel's parameter elements.

    Args:
        p: the norm's order, ``p > 0`` (1: L1, default; 2: L2).
    """

    requires_data = False

    def __init__(self, *, p: float = 1.0) -> None:
        if not p > 0:
            raise ValueError(f"p must be > 0, got {p}")
        super().__init__()
        self.p = p

    def scores(self) -> dict[int, Tensor]:
        """Group id -> float64 tensor ``(size,)`` of channel norms of the current weights."""
        assert self._model is not None  # set by prepare(); self.plans raises first otherwise
        plans = self.plans
        with torch.no_grad():
            powered = {k: w.detach().abs().to(torch.float64).pow(self.p) for k, w in self._params(self._model).items()}
            return {gid: channel_sum(plan, powered).pow(1.0 / self.p).cpu() for gid, plan in plans.items()}
