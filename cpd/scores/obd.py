"""``obd``: Optimal Brain Damage (LeCun et al., 1990) per channel.

Score of channel ``c``: the OBD saliencies of its parameter elements, summed over
every parameter member of the group and over batches,

    s_c = sum_batches sum_{i in c} 1/2 * w_i^2 * H_ii

where ``H_ii`` is a diagonal entry of the Hessian of the batch loss. Off-diagonal
terms (also those between elements of the same channel) are ignored: that is OBD's
assumption, and the difference to ``hessian``, which keeps the whole within-channel
block through the mask gradient.

``diag="hutchinson"`` (default) estimates ``H_ii`` as ``z_i * (H z)_i`` averaged over
``n_probes`` Rademacher vectors ``z`` (unbiased; exact for a diagonal Hessian), with
Hessian-vector products by double backward. Probes come from a generator seeded at
:meth:`prepare`, drawn on the CPU in sorted parameter-name order, so results do not
depend on the device.

``diag="fisher"`` uses the empirical Fisher diagonal instead, ``H_ii ~ sum_n
(dL_n/dw_i)^2`` with per-sample losses (``per_sample=True``, default; same
convention as ``hessian``) or ``(dL/dw_i)^2`` of the batch loss.

Batch losses are differentiated as given: with Hutchinson the accumulated Hessian is
that of the sum of the batch losses, so a mean-reduced loss weights every batch
equally rather than every sample.

``clamp=True`` (default) reports negative totals as 0 in :meth:`scores`: a Hessian
diagonal at a minimum is non-negative, negative sums come from probe noise or
non-convexity, and clamping only the final total keeps the noise averaging over
batches intact. (The Fisher diagonal is never negative.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from cpd.groups.group import Group
from cpd.scores.base import Criterion
from cpd.scores.batch import Batch, LossFn
from cpd.scores.channels import channel_sum
from cpd.scores.persample import Method
from cpd.scores.registry import register

__all__ = ["OBDCriterion"]


@register("obd")
class OBDCriterion(Criterion):
    """Optimal Brain Damage saliency; see the module docstring.

    Args:
        diag: ``"hutchinson"`` (Hessian diagonal by Rademacher probes) or ``"fisher"``.
        n_probes: Rademacher probes per batch (Hutchinson).
        seed: seed of the probe generator.
        per_sample: per-sample Fisher diagonal (``diag="fisher"`` only).
        clamp: report negative totals as 0.
        norm_eval, method, chunk_size: see :class:`~cpd.scores.base.Criterion`.
    """

    def __init__(
        self,
        *,
        diag: Literal["hutchinson", "fisher"] = "hutchinson",
        n_probes: int = 1,
        seed: int = 0,
        per_sample: bool = True,
        clamp: bool = True,
        norm_eval: bool = True,
        method: Method = "auto",
        chunk_size: int = 16,
    ) -> None:
        if diag not in ("hutchinson", "fisher"):
            raise ValueError(f"diag must be 'hutchinson' or 'fisher', got {diag!r}")
        if n_probes < 1:
            raise ValueError(f"n_probes must be >= 1, got {n_probes}")
        super().__init__(
            per_sample=per_sample and diag == "fisher", norm_eval=norm_eval, method=method, chunk_size=chunk_size
        )
        self.diag = diag
        self.n_probes = n_probes
        self.seed = seed
        self.clamp = clamp
        self._gen = torch.Generator().manual_seed(seed)

    def prepare(self, model: nn.Module, groups: Iterable[Group]) -> OBDCriterion:
        """As :meth:`Criterion.prepare`; also re-seeds the probe generator."""
        super().prepare(model, groups)
        self._gen = torch.Generator().manual_seed(self.seed)
        return self

    def scores(self) -> dict[int, Tensor]:
        out = super().scores()
        return {gid: s.clamp_min(0.0) for gid, s in out.items()} if self.clamp else out

    # -- Fisher diagonal: gradients in, via the shared entry points ------------------
    def _update(self, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor], per_sample: bool) -> None:
        if self.diag != "fisher":
            raise ValueError("obd with diag='hutchinson' needs the loss graph: use accumulate or accumulate_loss")
        diag = {k: grads[k].square().sum(0) if per_sample else grads[k].square() for k in weights}
        self._add_saliency(weights, diag)

    # -- Hutchinson: needs the graph, so it overrides the loss-level entry points ---
    def _accumulate_batch(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> None:
        if self.diag == "fisher":
            super()._accumulate_batch(model, batch, loss_fn)
            return
        params = self._params(model)
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        with torch.enable_grad():
            loss = batch.loss(model, loss_fn, params=leaves)
            diag = self._hutchinson(loss, leaves, keep_graph=False)
        self._add_saliency({k: v.detach() for k, v in params.items()}, diag)

    def accumulate_loss(self, model: nn.Module, loss: Tensor) -> None:
        """As :meth:`Criterion.accumulate_loss`; Hutchinson uses the Hessian of ``loss.sum()``."""
        if self.diag == "fisher":
            super().accumulate_loss(model, loss)
            return
        _ = self.plans
        params = self._params(model)
        diag = self._hutchinson(loss.sum(), params, keep_graph=True)
        self._add_saliency({k: v.detach() for k, v in params.items()}, diag)
        self.num_batches += 1
        self.num_samples += loss.numel() if loss.ndim == 1 else 0

    def _hutchinson(self, loss: Tensor, params: Mapping[str, Tensor], keep_graph: bool) -> dict[str, Tensor]:
        """Estimate ``diag(H)`` of ``loss`` w.r.t. ``params``: name -> tensor ``param.shape``."""
        names = list(params)
        inputs = [params[k] for k in names]
        diag = {k: torch.zeros_like(params[k]) for k in names}
        if not inputs:
            return diag
        grads = torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True)
        for j in range(self.n_probes):
            # Draw for every parameter, used or not, so the probes do not depend on
            # which parameters the loss happens to reach.
            probes = {k: _rademacher(params[k], self._gen) for k in names}
            # A gradient without a graph means the loss is linear in that parameter:
            # its Hessian rows are zero, so it contributes nothing to z^T g.
            terms = [(g * probes[k]).sum() for k, g in zip(names, grads) if g is not None and g.requires_grad]
            if not terms:
                break
            hz = torch.autograd.grad(
                torch.stack(terms).sum(), inputs, retain_graph=keep_graph or j < self.n_probes - 1, allow_unused=True
            )
            for k, h in zip(names, hz):
                if h is not None:
                    diag[k] += probes[k] * h.detach()
        return {k: d / self.n_probes for k, d in diag.items()}

    def _add_saliency(self, weights: Mapping[str, Tensor], diag: Mapping[str, Tensor]) -> None:
        saliency = {k: 0.5 * weights[k].square() * diag[k] for k in weights}
        for gid, plan in self.plans.items():
            self._add(gid, channel_sum(plan, saliency))


def _rademacher(like: Tensor, gen: torch.Generator) -> Tensor:
    """A ±1 tensor shaped like ``like``, drawn on the CPU from ``gen``."""
    z = torch.randint(0, 2, like.shape, generator=gen, dtype=torch.int8).to(like.dtype) * 2 - 1
    return z.to(like.device)
