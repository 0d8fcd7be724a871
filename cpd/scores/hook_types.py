"""Small shared pieces of the hook engine (:mod:`cpd.scores.activation_grads`).

* :class:`HooksUnsupported`: the hook engine cannot score this model, loss or
  parameter; callers fall back to per-sample weight gradients (``vmap``).
* :class:`Call`: one recorded call of a module: its input and output activations and
  the gradients of the summed per-sample losses with respect to them.
* :func:`sum_except`: the per-sample reduction every rule ends with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["HooksUnsupported", "Call", "sum_except", "zeros_for"]


class HooksUnsupported(RuntimeError):
    """The activation-gradient (hook) engine cannot express this case exactly."""


@dataclass
class Call:
    """One call of a hooked module, batch first.

    Attributes:
        x: the module's input ``(N, ...)`` (``None`` when no rule needs it).
        dx: ``dL/dx`` through *this* module only, same shape as ``x`` (``None`` when
            not needed or when no gradient reached it).
        y: the module's output ``(N, ...)`` as the module returned it (before any
            later in-place change).
        dy: ``dL/dy``, the total gradient of the output, same shape as ``y``.
    """

    x: Tensor | None = None
    dx: Tensor | None = None
    y: Tensor | None = None
    dy: Tensor | None = None


def sum_except(t: Tensor, keep: int) -> Tensor:
    """Sum ``t`` over every dim except the batch dim 0 and ``keep``.

    Args:
        t: shape ``(N, ...)``.
        keep: the dim to keep (negative counts from the end); must not be 0.

    Returns:
        Shape ``(N, t.shape[keep])``.
    """
    keep = keep % t.ndim
    if keep == 0:
        raise ValueError("sum_except: the batch dim cannot be the kept dim")
    others = [d for d in range(1, t.ndim) if d != keep]
    # torch.sum(dim=[]) would sum everything, so a 2-D tensor skips the sum.
    return t.sum(dim=others) if others else t


def zeros_for(like: Tensor, n: int, length: int) -> Tensor:
    """``(n, length)`` zeros with ``like``'s dtype and device (a member no gradient reached)."""
    return torch.zeros(n, length, dtype=like.dtype, device=like.device)
