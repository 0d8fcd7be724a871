"""The sum of per-sample losses from ONE batched forward pass.

With batch norm in eval mode (and no other interaction between samples) sample
``n``'s outputs depend on sample ``n``'s inputs only. Then slicing the outputs and the
targets per sample and summing

    L = sum_n loss_fn(outputs[n:n+1], targets[n:n+1])

gives, in one backward pass, ``dL/da_n = dL_n/da_n`` for every activation ``a_n`` of
sample ``n``: exactly the per-sample convention of :mod:`cpd.scores.persample`
(``L_n`` is ``loss_fn`` on a batch of one), without running the model per sample.

Outputs may be tensors, tuples, dicts or Hugging Face ``ModelOutput`` objects (any
registered pytree); every tensor in them must have the batch as dim 0. A scalar in
the outputs (a loss the model computed over the whole batch) or an object that is
not a pytree cannot be split per sample: :class:`HooksUnsupported` is raised.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten

from cpd.scores.batch import Batch, LossFn, check_scalar
from cpd.scores.hook_types import HooksUnsupported

__all__ = ["per_sample_loss_sum"]

#: output leaves that carry no per-sample data and are passed to every sample as is
_PLAIN = (type(None), bool, int, float, complex, str, torch.dtype, torch.device)


def per_sample_loss_sum(outputs: Any, batch: Batch, loss_fn: LossFn) -> Tensor:
    """``sum_n loss_fn(outputs[n:n+1], targets[n:n+1])`` over the ``batch.size`` samples.

    Args:
        outputs: the model's outputs on the whole batch.
        batch: the batch (its batched target leaves are sliced like the inputs).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.

    Returns:
        A scalar tensor with the graph of every per-sample loss.

    Raises:
        HooksUnsupported: the outputs cannot be split per sample.
    """
    n = batch.size
    leaves, spec = tree_flatten(outputs)
    for leaf in leaves:
        if isinstance(leaf, Tensor):
            if leaf.ndim == 0 or leaf.shape[0] != n:
                raise HooksUnsupported(
                    f"the model output has a tensor of shape {tuple(leaf.shape)} without the batch dimension "
                    f"({n}), so per-sample losses cannot be sliced from one forward"
                )
        elif not isinstance(leaf, _PLAIN):
            raise HooksUnsupported(
                f"the model output contains a {type(leaf).__name__}, which cannot be split per sample"
            )
    losses = []
    for i in range(n):
        out_i = tree_unflatten([x[i : i + 1] if isinstance(x, Tensor) else x for x in leaves], spec)
        _, _, targets_i = batch.rebuild(batch.batched_leaves(i, i + 1))
        losses.append(check_scalar(loss_fn(out_i, targets_i)))
    return torch.stack(losses).sum()
