"""Per-sample gradients of a loss with respect to a subset of parameters.

Sample ``n``'s gradient is the gradient of ``loss_fn(model(x_n), y_n)`` where
``x_n, y_n`` are the ``n``-th sample as a batch of one. A loss that is a sum or a
mean over the batch dimension gives the same value on a batch of one, so the
per-sample gradient is independent of the reduction: for a mean-reduced batch loss
this is the batch loss's per-sample term rescaled by the batch size. (Losses that
couple samples, e.g. contrastive ones, have no per-sample form; use the batch form.)

Two engines:

* ``"vmap"``: ``torch.func.vmap(torch.func.grad(...))`` over chunks of the batch, with
  the model run through ``functional_call``. One batched forward/backward per chunk.
* ``"loop"``: a forward and backward per sample. Slow but works for any model
  (data-dependent control flow, ops without batching rules).

``"auto"`` tries vmap and, if it raises, warns once and uses the loop from then on.

The ``hessian`` criterion needs less than full per-sample gradients and by default
uses the one-backward hook engine instead (:mod:`cpd.scores.activation_grads`); this
module serves the other criteria, ``method="vmap"``/``"loop"``, and the parameters
the hook engine cannot express.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from cpd.scores.batch import Batch, LossFn, zeros_like_missing

__all__ = ["PerSampleGrads", "Method"]

Method = Literal["auto", "vmap", "loop"]


class PerSampleGrads:
    """Computes per-sample gradients chunk by chunk.

    Args:
        method: ``"auto"``, ``"vmap"`` or ``"loop"`` (see module docstring).
        chunk_size: samples per vmapped chunk. Memory grows as ``chunk_size`` times
            the size of the differentiated parameters.
    """

    def __init__(self, method: Method = "auto", chunk_size: int = 16) -> None:
        if method not in ("auto", "vmap", "loop"):
            hint = " ('hooks' is only an engine of the hessian criterion)" if method == "hooks" else ""
            raise ValueError(f"method must be 'auto', 'vmap' or 'loop', got {method!r}{hint}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.method: Method = method
        self.chunk_size = chunk_size
        self._vmap_failed = False

    def __call__(
        self,
        model: nn.Module,
        params: Mapping[str, Tensor],
        batch: Batch,
        loss_fn: LossFn,
    ) -> Iterator[dict[str, Tensor]]:
        """Yield per-sample gradients for consecutive chunks of ``batch``.

        Args:
            params: canonical name -> parameter; only these are differentiated.

        Yields:
            name -> tensor of shape ``(n_chunk, *params[name].shape)``; the chunks
            cover the batch in order. Nothing is written to ``.grad``.
        """
        for start in range(0, batch.size, self.chunk_size):
            stop = min(start + self.chunk_size, batch.size)
            yield self._chunk(model, params, batch, loss_fn, start, stop)

    def _chunk(
        self, model: nn.Module, params: Mapping[str, Tensor], batch: Batch, loss_fn: LossFn, start: int, stop: int
    ) -> dict[str, Tensor]:
        if self.method == "loop" or self._vmap_failed:
            return _loop(model, params, batch, loss_fn, start, stop)
        try:
            return _vmap(model, params, batch, loss_fn, start, stop)
        except Exception as err:  # vmap raises many types for unsupported models
            if self.method == "vmap":
                raise
            vmap_err = err
        # If the loop fails too, the model or loss is broken rather than unsupported by
        # vmap: raise the loop's (plainer) error and keep trying vmap next time.
        grads = _loop(model, params, batch, loss_fn, start, stop)
        self._vmap_failed = True
        warnings.warn(
            f"per-sample gradients: torch.func.vmap failed ({type(vmap_err).__name__}: {vmap_err}); "
            "falling back to one backward pass per sample",
            RuntimeWarning,
            stacklevel=4,
        )
        return grads


def _vmap(
    model: nn.Module, params: Mapping[str, Tensor], batch: Batch, loss_fn: LossFn, start: int, stop: int
) -> dict[str, Tensor]:
    detached = {k: v.detach() for k, v in params.items()}

    def sample_loss(p: dict[str, Tensor], leaves: list[Tensor]) -> Tensor:
        # Inside vmap each leaf has lost its batch dim; give it back as a batch of one
        # so the model and the loss see their usual shapes.
        return batch.loss(model, loss_fn, params=p, batched=[x.unsqueeze(0) for x in leaves])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0), randomness="different")
    # Outer no_grad: the model's other parameters still require grad, and without it
    # every chunk would also build an (unused) ordinary autograd graph for them.
    # torch.func.grad ignores an enclosing no_grad, so the gradients are unaffected.
    with torch.no_grad():
        return per_sample(detached, batch.batched_leaves(start, stop))


def _loop(
    model: nn.Module, params: Mapping[str, Tensor], batch: Batch, loss_fn: LossFn, start: int, stop: int
) -> dict[str, Tensor]:
    names = list(params)
    rows: list[list[Tensor]] = []
    for n in range(start, stop):
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        with torch.enable_grad():
            loss = batch.loss(model, loss_fn, params=leaves, batched=batch.batched_leaves(n, n + 1))
            inputs = [leaves[k] for k in names]
            rows.append(zeros_like_missing(torch.autograd.grad(loss, inputs, allow_unused=True), inputs))
    return {k: torch.stack([r[i] for r in rows]) for i, k in enumerate(names)}
