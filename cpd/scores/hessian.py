"""``hessian``: the CPD criterion (empirical Fisher of a channel mask).

For a channel ``c`` of a group, put a multiplicative mask ``m_c`` (at 1) on every
parameter element ``i`` that belongs to the channel, in every parameter member of the
group. Its gradient for sample ``n`` is

    g_{n,c} = dL_n/dm_c = sum_{i in c} w_i * dL_n/dw_i

and the score is the empirical-Fisher estimate of the mask's Hessian diagonal,

    s_c = sum_n g_{n,c}^2        (per_sample=True, the default)

accumulated over every batch since the last reset. Removing the channel sets
``m_c = 0``; at a minimum of the loss the second-order change is ``dL_c ~ s_c / 2``
(exactly so when the loss is quadratic in the mask and the empirical Fisher equals
its Hessian).

Per-sample convention: ``L_n`` is ``loss_fn`` evaluated on sample ``n`` alone (a batch
of one), which is the same for sum- and mean-reduced losses; for a mean-reduced
batch loss this rescales the per-sample term by the batch size. Hence the scores over
a dataset equal the sum of the scores over any split of it into batches.

``per_sample=False`` is the cheaper form the authors shipped: ``G_c`` is the gradient
of the whole batch loss (one backward pass) and ``s_c += G_c^2`` per batch. It
depends on the batch split and on the loss reduction, and per-sample gradients of
opposite sign cancel inside ``G_c`` before squaring.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from cpd.scores.base import Criterion
from cpd.scores.channels import channel_sum
from cpd.scores.persample import Method
from cpd.scores.registry import register

__all__ = ["HessianCriterion"]


@register("hessian")
class HessianCriterion(Criterion):
    """Fisher (squared mask-gradient) importance; see the module docstring.

    Args:
        per_sample: square per-sample mask gradients (True, default) or the batch's.
        norm_eval: batch-norm layers in eval mode while scoring (see
            :class:`~cpd.scores.base.Criterion`).
        method: per-sample engine: ``"auto"``, ``"vmap"`` or ``"loop"``.
        chunk_size: samples per vmapped chunk.
    """

    def __init__(
        self,
        *,
        per_sample: bool = True,
        norm_eval: bool = True,
        method: Method = "auto",
        chunk_size: int = 16,
    ) -> None:
        super().__init__(per_sample=per_sample, norm_eval=norm_eval, method=method, chunk_size=chunk_size)

    def _update(self, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor], per_sample: bool) -> None:
        # w * dL/dw element-wise; with per-sample grads (N, *shape) the weight broadcasts.
        wg = {k: weights[k] * grads[k] for k in weights}
        for gid, plan in self.plans.items():
            g = channel_sum(plan, wg, batched=per_sample)  # (N, size) or (size,)
            s = g.square()
            self._add(gid, s.sum(0) if per_sample else s)
