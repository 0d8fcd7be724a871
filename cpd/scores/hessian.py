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

Per-sample engines (``method``):

* ``"hooks"``: :mod:`cpd.scores.activation_grads`. One forward of the batch, the sum
  of the per-sample losses, and one backward to the activations only: ``g_{n,c}``
  is a reduction of activations times activation gradients (about the cost of a
  training step). Parameters no rule expresses exactly get their per-sample terms
  from ``"vmap"`` restricted to them (warned once).
* ``"vmap"`` / ``"loop"``: per-sample weight gradients
  (:mod:`cpd.scores.persample`), then ``w * grad`` summed per channel.
* ``"auto"`` (default): ``"hooks"``; if the model or loss cannot be scored that way
  (outputs that cannot be sliced per sample, a forward that reads tensor values or
  mixes samples), warns once and uses ``"vmap"``, falling back to ``"loop"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Literal

from torch import Tensor, nn

from cpd.groups.group import Group
from cpd.scores.activation_grads import ActivationGrads, HooksUnsupported
from cpd.scores.base import Criterion
from cpd.scores.batch import Batch, LossFn
from cpd.scores.channels import channel_sum, gather_channels
from cpd.scores.registry import register

__all__ = ["HessianCriterion", "HessianMethod"]

HessianMethod = Literal["auto", "hooks", "vmap", "loop"]


@register("hessian")
class HessianCriterion(Criterion):
    """Fisher (squared mask-gradient) importance; see the module docstring.

    Args:
        per_sample: square per-sample mask gradients (True, default) or the batch's.
        norm_eval: batch-norm layers in eval mode while scoring (see
            :class:`~cpd.scores.base.Criterion`).
        method: per-sample engine: ``"auto"`` (default), ``"hooks"``, ``"vmap"`` or
            ``"loop"`` (see the module docstring).
        chunk_size: samples per vmapped chunk.
    """

    def __init__(
        self,
        *,
        per_sample: bool = True,
        norm_eval: bool = True,
        method: HessianMethod = "auto",
        chunk_size: int = 16,
    ) -> None:
        if method not in ("auto", "hooks", "vmap", "loop"):
            raise ValueError(f"method must be 'auto', 'hooks', 'vmap' or 'loop', got {method!r}")
        # The weight-gradient engine serves "vmap"/"loop" and the hook engine's fallback.
        engine_method = "auto" if method == "hooks" else method
        super().__init__(per_sample=per_sample, norm_eval=norm_eval, method=engine_method, chunk_size=chunk_size)
        self.method: HessianMethod = method
        self._hooks = ActivationGrads(self._engine)
        self._hooks_failed = False
        self._dims: dict[str, list[int]] = {}

    def prepare(self, model: nn.Module, groups: Iterable[Group]) -> HessianCriterion:
        """As :meth:`Criterion.prepare`; also forgets the hook engine's probe."""
        super().prepare(model, groups)
        dims: dict[str, set[int]] = {}
        for plan in self.plans.values():
            for m in plan.members:
                dims.setdefault(m.name, set()).add(m.dim)
        self._dims = {k: sorted(v) for k, v in dims.items()}
        self._hooks.reset()
        self._hooks_failed = False
        return self

    def _accumulate_batch(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> None:
        if not self.per_sample or self.method in ("vmap", "loop") or self._hooks_failed:
            super()._accumulate_batch(model, batch, loss_fn)
            return
        try:
            vectors = self._hooks(model, self._params(model), self._dims, batch, loss_fn)
        except Exception as err:  # many error types: an unsupported model or a broken one
            if self.method == "hooks":
                if isinstance(err, HooksUnsupported):
                    raise HooksUnsupported(f"hessian method='hooks': {err}; use method='auto' or 'vmap'") from err
                raise
            hooks_err = err
        else:
            for gid, plan in self.plans.items():
                self._add(gid, gather_channels(plan, vectors, batch.size).square().sum(0))
            return
        # If the fallback fails too, the model or loss is broken rather than beyond the
        # hooks: its (plainer) error propagates and hooks are tried again next time.
        super()._accumulate_batch(model, batch, loss_fn)
        self._hooks_failed = True
        warnings.warn(
            f"hessian: the hook engine cannot score this model ({type(hooks_err).__name__}: {hooks_err}); "
            "falling back to per-sample weight gradients (vmap), which cost more",
            RuntimeWarning,
            stacklevel=3,
        )

    def _update(self, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor], per_sample: bool) -> None:
        # w * dL/dw element-wise; with per-sample grads (N, *shape) the weight broadcasts.
        wg = {k: weights[k] * grads[k] for k in weights}
        for gid, plan in self.plans.items():
            g = channel_sum(plan, wg, batched=per_sample)  # (N, size) or (size,)
            s = g.square()
            self._add(gid, s.sum(0) if per_sample else s)
