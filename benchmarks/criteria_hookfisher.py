"""Prototype: the per-sample ``hessian`` score from ONE batched backward pass.

``cpd.scores.hessian`` with ``per_sample=True`` differentiates every sample's loss
w.r.t. the weights (``torch.func.vmap`` over ``grad``): per-sample weight gradients,
which for convolutions cost a grouped weight-gradient convolution per chunk of
samples. On the benchmark model that is ~2.8x a training step, above the issue's
1.5x target. But the score only needs, per sample ``n`` and channel ``c``, the scalar

    g_{n,c} = sum_{i in c} w_i * dL_n/dw_i

and for every member kind that sum is a reduction of activations times activation
gradients over spatial positions (the Group-Fisher-Pruning form):

* conv / linear weight, output dim:  sum_pos out * dL/dout  (minus ``b * sum dL/dout``
  when there is a bias, which the bias member adds back),
* conv / linear weight, input dim:   sum_pos in * dL/din, with ``dL/din`` the gradient
  flowing through *this* module (a full backward hook's ``grad_input``),
* batch-norm weight:  sum_pos (out - beta) * dL/dout;  batch-norm bias: beta * sum dL/dout.

With batch norm in eval mode the samples are independent, so the gradient of the
*sum*-reduced batch loss w.r.t. sample ``n``'s activations is ``dL_n/d(activation)``:
one ordinary backward (activation gradients only, no weight gradients) gives every
``g_{n,c}``. ``HookFisher`` implements that for Conv2d (groups=1), Linear and
BatchNorm2d members of width 1; ``criteria.py`` checks that its scores equal
``cpd``'s per-sample ``hessian`` scores and times it next to the others.

Limits of the prototype: models must not modify module outputs in place (full
backward hooks forbid it; the benchmark model uses ``ReLU(inplace=False)``), each
module runs once per forward, and the loss is cross-entropy.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cpd.groups.group import Group
from cpd.scores.batch import norm_layers_in_eval

__all__ = ["HookFisher"]


class HookFisher:
    """Per-sample empirical Fisher of channel masks (``hessian``, ``per_sample=True``)."""

    def __init__(self, model: nn.Module, groups: Iterable[Group]) -> None:
        self.model = model
        self.groups = list(groups)
        self.plans: dict[int, list[tuple[str, str, Tensor]]] = {}
        needs: dict[str, set[str]] = {}
        for g in self.groups:
            rows = []
            for m in g.params():
                mod_name, _, pname = m.name.rpartition(".")
                mod = model.get_submodule(mod_name)
                index = torch.tensor(m.index, dtype=torch.long)
                if index.shape[1] != 1:
                    raise NotImplementedError(f"{m.name}: channels of width {index.shape[1]}")
                kind = _kind(mod, pname, m.dim)
                rows.append((mod_name, kind, index[:, 0]))
                needs.setdefault(mod_name, set()).add(kind)
            self.plans[g.id] = rows
        self.needs = needs
        self.acc = {g.id: torch.zeros(g.size, dtype=torch.float64) for g in self.groups}

    def scores(self) -> dict[int, Tensor]:
        return {k: v.clone() for k, v in self.acc.items()}

    def accumulate(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
        red: dict[tuple[str, str], Tensor] = {}
        saved: dict[str, tuple[Tensor, Tensor]] = {}
        handles = []

        def fwd(name: str):
            def hook(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
                saved[name] = (args[0].detach(), out.detach())
            return hook

        def bwd(name: str):
            def hook(mod: nn.Module, grad_in: tuple[Tensor | None, ...], grad_out: tuple[Tensor, ...]) -> None:
                x, y = saved[name]
                go = grad_out[0]
                pos = tuple(range(2, go.ndim))  # spatial dims (none for Linear)

                def s(t: Tensor) -> Tensor:
                    return t.sum(pos) if pos else t

                for kind in self.needs[name]:
                    if kind == "out":
                        v = s(y * go)
                        if getattr(mod, "bias", None) is not None:
                            v = v - mod.bias.detach() * s(go)
                    elif kind == "in":
                        gi = grad_in[0]
                        v = s(x * gi) if gi is not None else torch.zeros_like(s(x))
                    elif kind == "bias":
                        v = mod.bias.detach() * s(go)
                    else:  # "bn_weight"
                        v = s((y - mod.bias.detach()[:, None, None]) * go)
                    red[(name, kind)] = v.to(torch.float64)
            return hook

        for name in self.needs:
            mod = model.get_submodule(name)
            handles.append(mod.register_forward_hook(fwd(name)))
            handles.append(mod.register_full_backward_hook(bwd(name)))
        try:
            with norm_layers_in_eval(model), torch.enable_grad():
                x = inputs.detach().requires_grad_(True)  # so every module's backward runs
                loss = F.cross_entropy(model(x), targets, reduction="sum")
                torch.autograd.grad(loss, [x])  # activation gradients only: no weight gradients
        finally:
            for h in handles:
                h.remove()
        for gid, rows in self.plans.items():
            g = None
            for mod_name, kind, index in rows:
                part = red[(mod_name, kind)][:, index]
                g = part if g is None else g + part
            if g is not None:
                self.acc[gid] += g.square().sum(0)


def _kind(mod: nn.Module, pname: str, dim: int) -> str:
    if isinstance(mod, nn.Conv2d) and mod.groups != 1:
        raise NotImplementedError("grouped convolutions")
    if isinstance(mod, (nn.Conv2d, nn.Linear)):
        if pname == "bias":
            return "bias"
        return "out" if dim == 0 else "in"
    if isinstance(mod, nn.BatchNorm2d):
        return "bn_weight" if pname == "weight" else "bias"
    raise NotImplementedError(f"{type(mod).__name__}")
