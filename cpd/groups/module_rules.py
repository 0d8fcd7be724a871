"""Couplings a module type's own Python code imposes, keyed by exact module type.

Op rules see what the aten ops do; a few library modules also *assume* sizes in
Python (``nn.MultiheadAttention`` reads its embedding width from the query and
asserts that it equals ``num_heads * head_dim``). Those assumptions are stated
here, once per module type, and applied after the trace is walked. Subclasses
match through the MRO.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from cpd.groups.rules.registry import Binding, Ctx
from cpd.groups.space import Dim
from cpd.trace.recorder import Trace

ModuleRule = Callable[[Ctx, str, nn.Module, dict[str, list[Dim]]], None]
MODULE_RULES: dict[type, ModuleRule] = {}


def module_rule(*types: type) -> Callable[[ModuleRule], ModuleRule]:
    def deco(fn: ModuleRule) -> ModuleRule:
        for t in types:
            if t in MODULE_RULES:
                raise ValueError(f"duplicate module rule for {t}")
            MODULE_RULES[t] = fn
        return fn

    return deco


def apply_module_rules(ctx: Ctx, trace: Trace, model: nn.Module) -> None:
    """Run the rule of every module whose type has one, on its traced parameters."""
    for name, m in model.named_modules():
        rule = next((MODULE_RULES[t] for t in type(m).__mro__ if t in MODULE_RULES), None)
        if rule is None:
            continue
        pre = f"{name}." if name else ""
        dims = {n[len(pre):]: ctx.dims(ref) for n, ref in trace.params.items()
                if n.startswith(pre)}
        rule(ctx, name, m, dims)


@module_rule(nn.MultiheadAttention)
def _multihead_attention(ctx: Ctx, name: str, m: nn.Module, p: dict[str, list[Dim]]) -> None:
    """Query width == embed_dim == heads x head_dim, and the output projection reads
    heads x head_dim: its input dim is (num_heads, head_dim), and the query width
    (in-projection columns) is that same space. ``forward`` asserts the first and
    reshapes with sizes read from the query, on its fused and its Python path alike.
    """
    q = p.get("in_proj_weight") or p.get("q_proj_weight")
    out = p.get("out_proj.weight")
    if q is None or out is None:
        return
    heads = int(m.num_heads)
    parts = ctx.space.cut(out[1], "prod", [heads, out_size(ctx, out[1]) // heads])
    if parts is None:
        ctx.freeze([q[1], out[1]], "multi-head attention with reshaped weights")
        return
    ctx.tie(q[1], out[1])
    if parts[0]:
        # num_heads follows the head count (the Python path's literals are
        # batch * num_heads, which would not name it for batches > 1).
        ctx.bindings.append(Binding(name, (heads,), [parts[0]], required=True))


def out_size(ctx: Ctx, dim: Dim) -> int:
    n = 1
    for a in dim:
        n *= ctx.space.size[ctx.space.find(a)]
    return n
