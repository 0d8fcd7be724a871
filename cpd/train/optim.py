"""Building the optimizer, and carrying its state over to a pruned model.

When a pruning callback replaces the model, the old optimizer holds state (AdamW
moments, SGD momentum buffers) for parameter objects that no longer exist. Parameters
whose name *and* shape are unchanged were not sliced (``apply_plan`` only slices along
a dim that lost channels), so their state is still exactly right and is moved over;
sliced parameters start with fresh state, like a parameter seen for the first time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from cpd.train.config import TrainConfig

__all__ = ["build_optimizer", "named_trainable", "transfer_state", "clip_gradients"]


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every parameter with ``requires_grad``, in module order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, config: TrainConfig) -> Optimizer:
    """AdamW or SGD over the trainable parameters of ``model``.

    Two param groups: weights with ``ndim >= 2`` (conv kernels, linear matrices) get
    ``config.weight_decay``; biases and normalisation scales (``ndim <= 1``) get none,
    because decaying them only shrinks the function's offsets and scales, which hurts
    accuracy without regularising anything. The lr set here is overwritten by
    :class:`~cpd.train.schedule.WarmupSchedule` before every step.

    Raises:
        ValueError: the model has no trainable parameter.
    """
    named = named_trainable(model)
    if not named:
        raise ValueError("the model has no parameter with requires_grad=True; nothing to train")
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    groups = [
        {"params": ps, "weight_decay": wd}
        for ps, wd in ((decay, config.weight_decay), (no_decay, 0.0))
        if ps
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def transfer_state(
    old: Optimizer,
    old_named: Iterable[tuple[str, Tensor]],
    new: Optimizer,
    new_named: Iterable[tuple[str, Tensor]],
) -> list[str]:
    """Move per-parameter optimizer state from ``old`` to ``new`` where still valid.

    State moves for every name present in both models with the same shape (the
    tensors are moved, not copied: ``old`` is about to be dropped).

    Args:
        old, new: the optimizers before and after the model replacement.
        old_named, new_named: ``(name, parameter)`` pairs of the old and new model.

    Returns:
        The names whose state was carried over.
    """
    new_by_name = dict(new_named)
    moved: list[str] = []
    for name, p_old in old_named:
        p_new = new_by_name.get(name)
        state = old.state.get(p_old)
        if p_new is None or not state or p_new.shape != p_old.shape:
            continue
        new.state[p_new] = {
            k: v.to(p_new.device) if isinstance(v, Tensor) and v.ndim > 0 else v for k, v in state.items()
        }
        moved.append(name)
    return moved


def clip_gradients(parameters: Iterable[Tensor], max_norm: float | None) -> Tensor:
    """Clip the global L2 norm of the gradients to ``max_norm``; return the norm before.

    With ``max_norm=None`` nothing is clipped and the norm is still returned (it is
    logged, and a spike in it is the usual first sign of a bad lr). The norm is a 0-dim
    tensor on the gradients' device: turning it into a float would sync a GPU every step.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    # inf max_norm computes the norm without scaling anything.
    return torch.nn.utils.clip_grad_norm_(params, math.inf if max_norm is None else max_norm)
