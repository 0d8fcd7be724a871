"""Mask gradients of free parameters: position embeddings, class tokens, layer scale.

A *free* parameter ``P`` is not the weight of a module with a rule in
:mod:`cpd.scores.module_rules` (exact types only); the model's own ``forward`` uses
it in a function call (``x + self.pos``, ``self.cls.expand(B, -1, -1)``,
``self.gamma * x``, or ``F.layer_norm(x, shape, self.weight, self.bias)`` inside a
subclass of ``nn.LayerNorm``). Every use is one torch function call
``z = f(..., P, ...)``, seen by a ``TorchFunctionMode``.

For the functions registered here ``z`` is linear in a scale ``s`` on ``P`` and
position ``p`` of ``P``'s dim ``d`` lies along one dim of ``z``: dim
``z.ndim - P.ndim + d`` for NumPy (right-aligned) broadcasting and layer norm, dim 1
for group norm's per-channel affine. With ``dz`` the gradient of the summed
per-sample losses w.r.t. ``z`` (whose dim 0 is the batch),

    v[n, p] = sum over sample n's elements of z at position p of  dz * T

where ``T = dz/ds`` at ``s = 1`` is the tangent of the use:

* ``add`` / ``sub``, and a norm's bias: ``T = ±alpha * P`` (broadcast);
* ``mul``, ``expand``: ``T = z``;
* a norm's weight (``z = xhat * W + b``): ``T = z - b``.

Several uses of one parameter add up (``W * dL/dW`` is the sum over uses). The
registry is keyed by the exact function objects the mode receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._pytree import tree_flatten

from cpd.scores.hook_types import sum_except, zeros_for

__all__ = ["FreeRule", "FREE_RULES", "Tangent"]

#: ``param``: ``+P``; ``neg_param``: ``-P``; ``output``: ``z``; ``output_minus_bias``: ``z - b``
Tangent = Literal["param", "neg_param", "output", "output_minus_bias"]


@dataclass(frozen=True)
class FreeRule:
    """How one function uses a free parameter.

    Attributes:
        tangents: positional index where ``P`` may appear -> its tangent.
        alpha: positions that the ``alpha=`` keyword multiplies.
        align: ``"right"`` (broadcasting, layer norm) or ``"channel"`` (a 1-D
            parameter along dim 1: group norm).
        bias_pos: positional index of the bias (for ``output_minus_bias``).
        keywords: keyword name -> the positional index it stands for (the functional
            norms pass ``weight=`` / ``bias=`` by keyword to ``__torch_function__``).
        options: other keywords that may be present (``eps``).
    """

    tangents: Mapping[int, Tangent]
    alpha: frozenset[int] = field(default_factory=frozenset)
    align: Literal["right", "channel"] = "right"
    bias_pos: int | None = None
    keywords: Mapping[str, int] = field(default_factory=dict)
    options: frozenset[str] = field(default_factory=frozenset)

    def position(self, p: Tensor, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int | None:
        """Where ``p`` is passed, as a positional index (``None``: elsewhere)."""
        pos = next((i for i, a in enumerate(args) if a is p), None)
        if pos is None:
            pos = next((self.keywords[k] for k, v in kwargs.items() if v is p and k in self.keywords), None)
        return pos

    def _arg(self, i: int, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if i < len(args):
            return args[i]
        return next((kwargs[k] for k, j in self.keywords.items() if j == i and k in kwargs), None)

    def z_dim(self, p: Tensor, z: Tensor, dim: int) -> int:
        """The dim of ``z`` that ``p``'s ``dim`` lies along."""
        return 1 + dim if self.align == "channel" else z.ndim - p.ndim + dim

    def _shaped(self, t: Tensor, z: Tensor) -> Tensor:
        """``t`` (a parameter or a bias) shaped to broadcast against ``z``."""
        return t.reshape([1, -1] + [1] * (z.ndim - 2)) if self.align == "channel" else t

    def check(self, p: Tensor, pos: int, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any,
              dims: Sequence[int]) -> str | None:
        """``None`` when this use is expressible, else why not."""
        if pos not in self.tangents:
            return f"parameter at argument {pos}"
        if sum(1 for a in tree_flatten((list(args), dict(kwargs)))[0] if a is p) != 1:
            return "parameter used twice in one call"
        allowed = set(self.keywords) | set(self.options) | ({"alpha"} if self.alpha else set())
        if set(kwargs) - allowed or isinstance(kwargs.get("alpha"), Tensor):
            return f"keyword arguments {sorted(kwargs)}"
        if not isinstance(out, Tensor) or out.ndim < 1 or out.ndim < p.ndim:
            return "result is not a batched tensor"
        if self.align == "channel" and (p.ndim != 1 or out.ndim < 2):
            return "per-channel parameter is not 1-D"
        for d in dims:
            zd = self.z_dim(p, out, d)
            if zd < 1 or p.shape[d] not in (1, out.shape[zd]):
                return f"dim {d} does not lie along a non-batch dim"
        return None

    def context(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """What :meth:`reduce` needs from the call besides ``P`` and ``z``."""
        bias = self._arg(self.bias_pos, args, kwargs) if self.bias_pos is not None else None
        return {"alpha": float(kwargs.get("alpha", 1.0)),
                "bias": bias.detach() if isinstance(bias, Tensor) else None}

    def needs_output(self, pos: int) -> bool:
        return self.tangents[pos] in ("output", "output_minus_bias")

    def reduce(self, p: Tensor, pos: int, ctx: Mapping[str, Any], z: Tensor, dz: Tensor | None,
               dims: Sequence[int], n: int) -> dict[int, Tensor]:
        """``v`` per member dim: ``(n, p.shape[dim])`` in ``z``'s dtype."""
        if dz is None:
            return {d: zeros_for(z, n, p.shape[d]) for d in dims}
        kind = self.tangents[pos]
        if kind == "output":
            tangent = z
        elif kind == "output_minus_bias":
            tangent = z if ctx["bias"] is None else z - self._shaped(ctx["bias"].to(z.dtype), z)
        else:
            scale = (-1.0 if kind == "neg_param" else 1.0) * (ctx["alpha"] if pos in self.alpha else 1.0)
            tangent = self._shaped(p.detach().to(dz.dtype), z) * scale
        prod = dz * tangent
        out: dict[int, Tensor] = {}
        for d in dims:
            v = sum_except(prod, self.z_dim(p, z, d))
            # A size-1 parameter dim broadcast over a longer one: its one position owns all.
            out[d] = v.sum(1, keepdim=True) if p.shape[d] == 1 and v.shape[1] != 1 else v
        return out


_ADD = FreeRule({0: "param", 1: "param"}, alpha=frozenset({1}))
_ADD_ = FreeRule({1: "param"}, alpha=frozenset({1}))  # x.add_(P): P is never the target
_SUB = FreeRule({0: "param", 1: "neg_param"}, alpha=frozenset({1}))
_SUB_ = FreeRule({1: "neg_param"}, alpha=frozenset({1}))
_MUL = FreeRule({0: "output", 1: "output"})
_MUL_ = FreeRule({1: "output"})
_EXPAND = FreeRule({0: "output"})
# F.layer_norm(input, normalized_shape, weight, bias, eps), F.group_norm(input, groups, weight, bias, eps)
_NORM_KW = {"keywords": {"weight": 2, "bias": 3}, "options": frozenset({"eps"})}
_NORM_RIGHT = FreeRule({2: "output_minus_bias", 3: "param"}, bias_pos=3, **_NORM_KW)  # type: ignore[arg-type]
_NORM_CHANNEL = FreeRule({2: "output_minus_bias", 3: "param"}, align="channel", bias_pos=3,
                         **_NORM_KW)  # type: ignore[arg-type]

#: exact torch function (as a TorchFunctionMode receives it) -> rule. ``x + P`` and
#: ``P * x`` arrive as ``Tensor.add`` / ``Tensor.mul``; norm modules call the
#: functional form with positional arguments.
FREE_RULES: dict[Any, FreeRule] = {
    torch.Tensor.add: _ADD,
    torch.add: _ADD,
    torch.Tensor.add_: _ADD_,
    torch.Tensor.sub: _SUB,
    torch.sub: _SUB,
    torch.Tensor.sub_: _SUB_,
    torch.Tensor.mul: _MUL,
    torch.mul: _MUL,
    torch.Tensor.mul_: _MUL_,
    torch.Tensor.expand: _EXPAND,
    torch.Tensor.expand_as: _EXPAND,
    F.layer_norm: _NORM_RIGHT,
    F.group_norm: _NORM_CHANNEL,
}
if hasattr(F, "rms_norm"):  # torch >= 2.4: rms_norm(input, normalized_shape, weight, eps)
    FREE_RULES[F.rms_norm] = FreeRule({2: "output"}, keywords={"weight": 2}, options=frozenset({"eps"}))
