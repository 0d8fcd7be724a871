"""The criterion lifecycle shared by every importance score.

A criterion is used like an optimizer::

    crit = get_criterion("hessian").prepare(model, groups)
    for inputs, targets in loader:            # any number of batches
        crit.accumulate(model, inputs, targets, loss_fn)
    s = crit.scores()                         # {group id: float64 tensor (size,)}
    crit.reset()                              # after a pruning step

Accumulation is streaming: each call adds to running per-channel sums and never
overwrites earlier batches. Three entry points feed it, from most to least
convenient; they can be mixed:

* :meth:`Criterion.accumulate` runs the forward and backward passes itself on one
  batch, differentiating ``loss_fn(outputs, targets)`` (task loss, distillation loss
  or both: whatever the caller's loss function computes). It never touches
  ``param.grad``, so it can sit inside a training loop.
* :meth:`Criterion.accumulate_loss` takes a loss tensor the caller already computed
  (with its graph): a scalar (batch form) or a vector of per-sample losses.
* :meth:`Criterion.accumulate_grads` takes gradients the caller already has, e.g. the
  ``.grad`` fields after the training step's ``backward()``.

Subclasses implement :meth:`Criterion._update` (gradients -> scores) or, for data-free
criteria, set ``requires_data = False`` and override :meth:`Criterion.scores`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cpd.groups.group import Group
from cpd.scores.batch import (
    Batch,
    LossFn,
    default_loss,
    norm_layers_in_eval,
    train_mode_norm_layers,
    zeros_like_missing,
)
from cpd.scores.channels import GroupPlan, build_plans, resolve_params
from cpd.scores.persample import Method, PerSampleGrads

__all__ = ["Criterion"]


class Criterion:
    """Base class: per-channel importance accumulated over batches.

    Args:
        per_sample: differentiate each sample's loss separately (criteria that have a
            per-sample form); otherwise one gradient per batch.
        norm_eval: during :meth:`accumulate`, put layers with running statistics
            (batch norm) that are in training mode into eval mode, so that samples are
            independent and scoring does not update running statistics. Required for
            ``per_sample=True`` on a model with batch norm in training mode.
        method: per-sample weight-gradient engine, ``"auto"`` (vmap, falling back to
            a loop), ``"vmap"`` or ``"loop"`` (``hessian`` adds ``"hooks"``).
        chunk_size: samples per vmapped chunk (bounds memory).

    Attributes:
        num_samples: samples seen since the last :meth:`reset` (for normalising).
        num_batches: batches seen since the last :meth:`reset`.
    """

    name: ClassVar[str] = ""
    requires_data: ClassVar[bool] = True

    def __init__(
        self,
        *,
        per_sample: bool = False,
        norm_eval: bool = True,
        method: Method = "auto",
        chunk_size: int = 16,
    ) -> None:
        self.per_sample = per_sample
        self.norm_eval = norm_eval
        self._engine = PerSampleGrads(method=method, chunk_size=chunk_size)
        self._plans: dict[int, GroupPlan] | None = None
        self._names: list[str] = []
        self._acc: dict[int, Tensor] = {}
        self._model: nn.Module | None = None
        self.num_samples = 0
        self.num_batches = 0

    # ------------------------------------------------------------------ lifecycle
    def prepare(self, model: nn.Module, groups: Iterable[Group]) -> Criterion:
        """Validate ``groups`` against ``model``, build index plans, zero the scores.

        Call again whenever the groups change (e.g. after physical pruning).
        Returns ``self`` so it chains.
        """
        self._plans = build_plans(model, groups)
        self._names = sorted({m.name for p in self._plans.values() for m in p.members})
        self._model = model
        self.reset()
        return self

    def reset(self) -> None:
        """Zero the accumulated scores and counters (keeps the groups)."""
        self._acc = {gid: torch.zeros(p.size, dtype=torch.float64) for gid, p in self.plans.items()}
        self.num_samples = 0
        self.num_batches = 0

    def scores(self) -> dict[int, Tensor]:
        """Accumulated scores: group id -> float64 CPU tensor of shape ``(size,)``.

        Higher means more important. Returns copies.
        """
        _ = self.plans  # fail clearly if prepare() was not called
        return {gid: acc.detach().to("cpu").clone() for gid, acc in self._acc.items()}

    @property
    def plans(self) -> dict[int, GroupPlan]:
        """The prepared groups (raises if :meth:`prepare` was not called)."""
        if self._plans is None:
            raise RuntimeError(f"{type(self).__name__}: call prepare(model, groups) first")
        return self._plans

    # ---------------------------------------------------------------- accumulation
    def accumulate(
        self,
        model: nn.Module,
        inputs: Any,
        targets: Any = None,
        loss_fn: LossFn | None = None,
    ) -> None:
        """Add one batch: forward ``model`` on ``inputs`` and differentiate the loss.

        Args:
            model: the model passed to :meth:`prepare` (same parameter names).
            inputs: a tensor ``(N, ...)``, a tuple of positional arguments, or a
                mapping of keyword arguments (see :mod:`cpd.scores.batch`).
            targets: anything ``loss_fn`` needs besides the outputs; tensors with a
                leading batch dimension ``N`` are sliced per sample.
            loss_fn: ``loss_fn(outputs, targets) -> scalar``; defaults to
                ``outputs.loss`` or a scalar output.
        """
        _ = self.plans  # fail early if prepare() was not called
        if not self.requires_data:
            return
        batch = Batch.from_inputs(inputs, targets)
        loss_fn = loss_fn or default_loss
        if self.per_sample and not self.norm_eval and train_mode_norm_layers(model):
            raise ValueError(
                "per-sample scores need independent samples, but the model has batch-norm "
                "layers in training mode and norm_eval=False; use norm_eval=True or per_sample=False"
            )
        with norm_layers_in_eval(model, self.norm_eval):
            self._accumulate_batch(model, batch, loss_fn)
        self.num_batches += 1
        self.num_samples += batch.size

    def _accumulate_batch(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> None:
        """Default: per-sample gradient chunks or one batch gradient, then :meth:`_update`."""
        params = self._params(model)
        weights = {k: v.detach() for k, v in params.items()}
        if self.per_sample:
            for grads in self._engine(model, params, batch, loss_fn):
                self._update(weights, grads, per_sample=True)
            return
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        with torch.enable_grad():
            loss = batch.loss(model, loss_fn, params=leaves)
            grads = self._grad(loss, leaves)
        self._update(weights, grads, per_sample=False)

    def accumulate_loss(self, model: nn.Module, loss: Tensor) -> None:
        """Add one batch from a loss the caller computed (its graph must reach the params).

        Args:
            loss: a scalar (batch form: one gradient) or a vector ``(N,)`` of unreduced
                per-sample losses (per-sample form, one backward per sample; a
                criterion without a per-sample form uses their sum).

        The graph is retained, so the caller can still call ``loss.backward()``;
        ``.grad`` fields are not touched. Per-sample losses from a forward pass through
        batch-norm layers in training mode are coupled through the batch statistics,
        and their gradients include that coupling (unlike :meth:`accumulate`).
        """
        _ = self.plans
        if not self.requires_data:
            return
        params = self._params(model)
        for k, p in params.items():
            if not p.requires_grad:
                raise ValueError(f"parameter {k!r} does not require grad; accumulate_loss cannot differentiate it")
        weights = {k: v.detach() for k, v in params.items()}
        if loss.ndim == 0 or not self.per_sample:
            self._update(weights, self._grad(loss.sum(), params, retain_graph=True), per_sample=False)
            n = loss.numel() if loss.ndim == 1 else 0
        elif loss.ndim == 1:
            rows = [self._grad(l_n, params, retain_graph=True) for l_n in loss]
            self._update(weights, {k: torch.stack([r[k] for r in rows]) for k in params}, per_sample=True)
            n = loss.numel()
        else:
            raise ValueError(f"loss must be a scalar or a vector of per-sample losses, got shape {tuple(loss.shape)}")
        self.num_batches += 1
        self.num_samples += n

    def accumulate_grads(
        self,
        model: nn.Module,
        grads: Mapping[str, Tensor] | None = None,
        *,
        per_sample: bool = False,
    ) -> None:
        """Add one batch from gradients the caller already has.

        Args:
            grads: parameter name -> gradient (shape ``param.shape``, or
                ``(N, *param.shape)`` when ``per_sample``). ``None`` reads ``param.grad``
                (after the caller's ``loss.backward()``); a missing gradient counts as
                zero. Per-sample gradients must be those of each sample's own loss
                (not divided by the batch size).
            per_sample: whether ``grads`` carry a leading sample dimension. The form of
                the contribution follows the gradients given, whatever the criterion's
                own ``per_sample`` setting.
        """
        _ = self.plans
        if not self.requires_data:
            return
        params = self._params(model)
        _, canonical = resolve_params(model)
        if grads is None:
            given = {k: p.grad for k, p in params.items() if p.grad is not None}
        else:
            given = {canonical.get(k, k): g for k, g in grads.items()}
        out: dict[str, Tensor] = {}
        for k, g in given.items():
            if k not in params:
                continue  # gradients of parameters outside the groups are irrelevant
            shape = tuple(g.shape[1:]) if per_sample else tuple(g.shape)
            if shape != tuple(params[k].shape):
                raise ValueError(f"gradient for {k!r} has shape {tuple(g.shape)}, parameter {tuple(params[k].shape)}")
            out[k] = g.detach()
        n = int(next(iter(out.values())).shape[0]) if per_sample and out else 0
        for k, p in params.items():
            if k not in out:
                out[k] = torch.zeros((n, *p.shape) if per_sample else p.shape, dtype=p.dtype, device=p.device)
        self._update({k: v.detach() for k, v in params.items()}, out, per_sample=per_sample)
        self.num_batches += 1
        self.num_samples += n

    # ------------------------------------------------------------------- helpers
    def _update(self, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor], per_sample: bool) -> None:
        """Turn gradients into score contributions and add them with :meth:`_add`.

        Args:
            weights: canonical name -> detached parameter.
            grads: canonical name -> gradient, ``param.shape`` or ``(N, *param.shape)``.
            per_sample: whether ``grads`` have the leading sample dimension.
        """
        raise NotImplementedError(f"{type(self).__name__} does not use gradients")

    def _add(self, gid: int, value: Tensor) -> None:
        """Add a ``(size,)`` contribution to group ``gid`` (kept on the value's device)."""
        acc = self._acc[gid]
        if acc.device != value.device and value.device.type != "mps":  # MPS has no float64
            acc = self._acc[gid] = acc.to(value.device)
        self._acc[gid] = acc + value.to(acc.device, torch.float64)

    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """Canonical name -> parameter for every parameter member of the prepared groups."""
        params, _ = resolve_params(model)
        missing = [k for k in self._names if k not in params]
        if missing:
            raise ValueError(f"model has no parameters {missing}; was prepare() called with another model?")
        return {k: params[k] for k in self._names}

    @staticmethod
    def _grad(loss: Tensor, params: Mapping[str, Tensor], retain_graph: bool = False) -> dict[str, Tensor]:
        """Gradient of a scalar ``loss`` w.r.t. ``params`` (zeros where unused), without ``.grad``."""
        inputs = list(params.values())
        if not inputs:
            return {}
        grads = torch.autograd.grad(loss, inputs, retain_graph=retain_graph, allow_unused=True)
        return dict(zip(params, zeros_like_missing(grads, inputs)))
