"""``taylor``: first-order Taylor importance of a channel mask.

For each batch ``b`` let ``G_{b,c} = sum_{i in c} w_i * dL_b/dw_i``: the gradient of
the batch loss ``L_b`` (as given, one backward pass) w.r.t. a multiplicative mask on
channel ``c``, summed over every parameter member of the group. Removing the channel
changes the loss by ``-G_{b,c}`` to first order, so the score is

    s_c = sum_b |G_{b,c}|

The absolute value is taken per batch, before summing over batches: near a minimum
the batch gradients change sign and a signed sum would cancel to ~0 for every
channel. Per-sample gradients given to :meth:`accumulate_grads` are summed over the
batch first (the batch gradient of a summed loss). The result depends on the batch
split and on the loss reduction.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from cpd.scores.base import Criterion
from cpd.scores.channels import channel_sum
from cpd.scores.registry import register

__all__ = ["TaylorCriterion"]


@register("taylor")
class TaylorCriterion(Criterion):
    """First-order Taylor importance ``sum_b |G_{b,c}|``; see the module docstring.

    Args:
        norm_eval: batch-norm layers in eval mode while scoring (see
            :class:`~cpd.scores.base.Criterion`).
    """

    def __init__(self, *, norm_eval: bool = True) -> None:
        super().__init__(per_sample=False, norm_eval=norm_eval)

    def _update(self, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor], per_sample: bool) -> None:
        wg = {k: weights[k] * (grads[k].sum(0) if per_sample else grads[k]) for k in weights}
        for gid, plan in self.plans.items():
            self._add(gid, channel_sum(plan, wg).abs())
