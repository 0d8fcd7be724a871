"""Mask gradients of module parameters from activations: one rule per module type.

For a parameter member (parameter ``W`` of a module, dimension ``d``) the hook engine
needs, for every sample ``n`` and every position ``p`` along ``d``,

    v[n, p] = sum_{i : i_d = p} W_i * dL_n/dW_i

the gradient of sample ``n``'s loss w.r.t. a multiplicative scale on slice ``p`` of
``W``. For the module types registered here, scaling a slice of ``W`` is the same as
scaling a slice of the module's input or of the weight's part of its output, so
``v`` is a sum over positions of an activation times its gradient
(the Group-Fisher-Pruning form):

* conv / linear, output dim:  ``sum_pos (y - b) * dy`` (``y - b`` is ``W x``);
* conv / linear, input dim:   ``sum_pos x * dx`` with ``dx`` the gradient flowing
  through *this* module only; a grouped conv's weight dim 1 indexes the position
  inside a group, so its ``groups`` input channels sharing that position are summed;
  a transposed conv swaps the roles of weight dims 0 and 1;
* batch norm (running statistics): ``W * rstd * sum_pos (x - mean) * dy``
  (computed from the input so that an in-place op on the output does not matter);
* layer / group / instance / RMS norm: ``sum_pos (y - b) * dy``;
* any bias ``b``:  ``b * sum_pos dy``;
* embedding: ``sum_pos y * dy`` over non-padding positions (dim 1), or per row.

When a module runs several times in one forward (weight sharing), each call adds
its term: ``W * dL/dW`` is the sum over uses. The registry is keyed by exact module
type: a subclass may override ``forward`` (weight standardisation, LoRA...), so it
gets no rule and its parameters fall back to per-sample weight gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cpd.scores.hook_types import Call, HooksUnsupported, sum_except, zeros_for

__all__ = ["ModuleRule", "MODULE_RULES", "Member"]

#: (parameter attribute on the module, dimension)
Member = tuple[str, int]


class ModuleRule:
    """Base rule: which members it can express and which activations it needs."""

    def check(self, module: nn.Module, attr: str, dim: int) -> str | None:
        """``None`` when the member is supported, else why not (one short phrase)."""
        raise NotImplementedError

    def needs(self, attr: str, dim: int) -> frozenset[str]:
        """The :class:`~cpd.scores.hook_types.Call` fields the member needs."""
        raise NotImplementedError

    def reduce(self, module: nn.Module, members: Sequence[Member], call: Call, n: int) -> dict[Member, Tensor]:
        """``v`` for each member: ``(n, param.shape[dim])`` in the activations' dtype."""
        raise NotImplementedError


def _bias_term(bias: Tensor | None, dy: Tensor | None, ch: int, n: int, like: Tensor) -> Tensor | None:
    """``b * sum_pos dy`` per channel: ``(n, C)``, or ``None`` without a bias."""
    if bias is None:
        return None
    if dy is None:
        return zeros_for(like, n, bias.shape[0])
    return sum_except(dy, ch) * bias.detach()


def _fold_groups(v: Tensor, groups: int) -> Tensor:
    """``(N, C)`` per channel -> ``(N, C // groups)`` per position inside a group."""
    return v.reshape(v.shape[0], groups, -1).sum(1) if groups > 1 else v


class AffineRule(ModuleRule):
    """Conv (transposed or not) and linear layers: output = ``W x + b``.

    Args:
        channel_dim: the channel dim of activations (1 for conv, -1 for linear).
        transposed: weight is ``(in, out / groups, ...)`` instead of ``(out, in / groups, ...)``.
    """

    def __init__(self, channel_dim: int, transposed: bool = False) -> None:
        self.ch = channel_dim
        self.transposed = transposed

    def _in_dim(self) -> int:
        return 0 if self.transposed else 1

    def check(self, module: nn.Module, attr: str, dim: int) -> str | None:
        if attr == "bias" and dim == 0:
            return None
        if attr == "weight" and dim in (0, 1):
            return None
        return f"{type(module).__name__}.{attr} dim {dim} has no activation form"

    def needs(self, attr: str, dim: int) -> frozenset[str]:
        if attr == "weight" and dim == self._in_dim():
            return frozenset({"x", "dx"})
        return frozenset({"y", "dy"}) if attr == "weight" else frozenset({"dy"})

    def reduce(self, module: nn.Module, members: Sequence[Member], call: Call, n: int) -> dict[Member, Tensor]:
        groups = int(getattr(module, "groups", 1))
        weight: Tensor = module.weight
        bias: Tensor | None = getattr(module, "bias", None)
        like = call.y if call.y is not None else call.x
        assert like is not None
        out: dict[Member, Tensor] = {}
        b_term = _bias_term(bias, call.dy, self.ch, n, like) if any(a == "bias" or d != self._in_dim()
                                                                    for a, d in members) else None
        for attr, dim in members:
            if attr == "bias":
                assert b_term is not None
                out[(attr, dim)] = b_term
            elif dim == self._in_dim():  # scale input channels: x * dx through this module
                c_in = weight.shape[dim] * (groups if not self.transposed else 1)
                if call.dx is None or call.x is None:
                    v = zeros_for(like, n, c_in)
                else:
                    v = sum_except(call.x * call.dx, self.ch)
                out[(attr, dim)] = v if self.transposed else _fold_groups(v, groups)
            else:  # scale output channels: (y - b) * dy
                assert call.y is not None
                c_out = module.out_channels if hasattr(module, "out_channels") else weight.shape[0]
                v = zeros_for(like, n, c_out) if call.dy is None else sum_except(call.y * call.dy, self.ch)
                if b_term is not None:
                    v = v - b_term
                out[(attr, dim)] = _fold_groups(v, groups) if self.transposed else v
        return out


class BatchNormRule(ModuleRule):
    """Batch norm with running statistics: ``y = (x - mean) * rstd * W + b`` per channel."""

    def check(self, module: nn.Module, attr: str, dim: int) -> str | None:
        if attr not in ("weight", "bias") or dim != 0:
            return f"{type(module).__name__}.{attr} dim {dim} has no activation form"
        if getattr(module, "running_mean", None) is None:
            return f"{type(module).__name__} without running statistics couples the samples"
        return None

    def needs(self, attr: str, dim: int) -> frozenset[str]:
        return frozenset({"x", "dy"}) if attr == "weight" else frozenset({"dy"})

    def reduce(self, module: nn.Module, members: Sequence[Member], call: Call, n: int) -> dict[Member, Tensor]:
        bn = module
        if bn.training or bn.running_mean is None:  # type: ignore[union-attr]
            raise HooksUnsupported(f"{type(bn).__name__} uses batch statistics, which couple the samples")
        c = int(bn.num_features)  # type: ignore[arg-type]
        like = call.y if call.y is not None else call.x
        assert like is not None
        out: dict[Member, Tensor] = {}
        for attr, dim in members:
            if call.dy is None:
                out[(attr, dim)] = zeros_for(like, n, c)
            elif attr == "bias":
                out[(attr, dim)] = sum_except(call.dy, 1) * bn.bias.detach()  # type: ignore[union-attr]
            else:
                assert call.x is not None
                view = [1, c] + [1] * (call.x.ndim - 2)
                mean = bn.running_mean.detach().to(call.x.dtype).reshape(view)  # type: ignore[union-attr]
                rstd = (bn.running_var.detach() + bn.eps).rsqrt()  # type: ignore[union-attr,operator]
                w = bn.weight.detach()  # type: ignore[union-attr]
                out[(attr, dim)] = sum_except((call.x - mean) * call.dy, 1) * (w * rstd).to(call.x.dtype)
        return out


class NormAffineRule(ModuleRule):
    """Norms with an elementwise affine on the normalised value: ``y = xhat * W + b``.

    Args:
        right_aligned: the parameter covers the last ``W.ndim`` dims of the activation
            (layer norm, RMS norm); otherwise it is per channel on dim 1 (group norm,
            instance norm).
    """

    def __init__(self, right_aligned: bool) -> None:
        self.right_aligned = right_aligned

    def check(self, module: nn.Module, attr: str, dim: int) -> str | None:
        p = getattr(module, attr, None)
        if attr not in ("weight", "bias") or not isinstance(p, Tensor) or not 0 <= dim < p.ndim:
            return f"{type(module).__name__}.{attr} dim {dim} has no activation form"
        return None

    def needs(self, attr: str, dim: int) -> frozenset[str]:
        return frozenset({"y", "dy"}) if attr == "weight" else frozenset({"dy"})

    def _broadcast(self, p: Tensor, ndim: int) -> tuple[Tensor, int]:
        """``p`` shaped to broadcast against a ``ndim``-dim activation, and its first dim there."""
        if self.right_aligned:
            return p, ndim - p.ndim
        return p.reshape([1, -1] + [1] * (ndim - 2)), 1

    def reduce(self, module: nn.Module, members: Sequence[Member], call: Call, n: int) -> dict[Member, Tensor]:
        bias: Tensor | None = getattr(module, "bias", None)
        out: dict[Member, Tensor] = {}
        for attr, dim in members:
            p: Tensor = getattr(module, attr).detach()
            like = call.dy if call.dy is not None else call.y
            if call.dy is None:
                assert like is not None
                out[(attr, dim)] = zeros_for(like, n, p.shape[dim])
                continue
            pb, first = self._broadcast(p, call.dy.ndim)
            if attr == "bias":
                t = call.dy * pb
            else:
                assert call.y is not None
                yb = call.y if bias is None else call.y - self._broadcast(bias.detach(), call.y.ndim)[0]
                t = yb * call.dy
            out[(attr, dim)] = sum_except(t, first + dim)
        return out


class EmbeddingRule(ModuleRule):
    """``y = W[ids]``: scaling column ``k`` scales output feature ``k``; row ``r`` its lookups."""

    def check(self, module: nn.Module, attr: str, dim: int) -> str | None:
        if attr != "weight" or dim not in (0, 1):
            return f"Embedding.{attr} dim {dim} has no activation form"
        if getattr(module, "max_norm", None) is not None:
            return "Embedding with max_norm renormalises its weight in place"
        if getattr(module, "scale_grad_by_freq", False):
            return "Embedding with scale_grad_by_freq couples the samples"
        return None

    def needs(self, attr: str, dim: int) -> frozenset[str]:
        return frozenset({"x", "y", "dy"})

    def reduce(self, module: nn.Module, members: Sequence[Member], call: Call, n: int) -> dict[Member, Tensor]:
        assert call.x is not None and call.y is not None
        ids, y = call.x, call.y
        num, width = module.weight.shape
        out: dict[Member, Tensor] = {}
        if call.dy is None:
            return {(a, d): zeros_for(y, n, num if d == 0 else width) for a, d in members}
        prod = y * call.dy  # (N, *, D)
        pad = getattr(module, "padding_idx", None)
        if pad is not None:  # the padding row gets no gradient at all
            prod = prod * (ids != pad).unsqueeze(-1).to(prod.dtype)
        for attr, dim in members:
            if dim == 1:
                out[(attr, dim)] = sum_except(prod, -1)
            else:
                per_lookup = prod.sum(-1).reshape(n, -1)  # (N, positions)
                rows = torch.zeros(n, num, dtype=prod.dtype, device=prod.device)
                out[(attr, dim)] = rows.scatter_add_(1, ids.reshape(n, -1).long(), per_lookup)
        return out


_CONV = AffineRule(channel_dim=1)
_CONV_T = AffineRule(channel_dim=1, transposed=True)
_CHANNEL_NORM = NormAffineRule(right_aligned=False)
_LAST_NORM = NormAffineRule(right_aligned=True)
_BN = BatchNormRule()

#: exact module type -> rule (subclasses are deliberately not matched)
MODULE_RULES: dict[type[nn.Module], ModuleRule] = {
    nn.Linear: AffineRule(channel_dim=-1),
    nn.Conv1d: _CONV,
    nn.Conv2d: _CONV,
    nn.Conv3d: _CONV,
    nn.ConvTranspose1d: _CONV_T,
    nn.ConvTranspose2d: _CONV_T,
    nn.ConvTranspose3d: _CONV_T,
    nn.BatchNorm1d: _BN,
    nn.BatchNorm2d: _BN,
    nn.BatchNorm3d: _BN,
    nn.SyncBatchNorm: _BN,  # in eval mode it is a plain batch norm
    nn.GroupNorm: _CHANNEL_NORM,
    nn.InstanceNorm1d: _CHANNEL_NORM,
    nn.InstanceNorm2d: _CHANNEL_NORM,
    nn.InstanceNorm3d: _CHANNEL_NORM,
    nn.LayerNorm: _LAST_NORM,
    nn.Embedding: EmbeddingRule(),
}
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    MODULE_RULES[nn.RMSNorm] = _LAST_NORM
