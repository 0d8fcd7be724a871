"""Tensors made from Python sizes: their dims cannot follow pruning, so they freeze."""

from __future__ import annotations

from cpd.groups.rules.registry import Args, Ctx, aten, register

_FACTORIES = """zeros ones empty full arange randn rand randint scalar_tensor empty_strided
linspace logspace eye lift_fresh new_zeros new_ones new_empty new_full tril_indices
triu_indices randperm normal.float_float""".split()


@register(*[aten(n) for n in _FACTORIES])
def factory(ctx: Ctx, a: Args) -> None:
    for o in a.outs():
        ctx.set(o, ctx.fresh(o.shape, "tensor created from Python sizes"))
