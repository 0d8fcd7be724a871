"""Fused attention: q and k share head_dim, v's head_dim becomes the output's."""

from __future__ import annotations

from cpd.groups.rules.elementwise import broadcast_dims
from cpd.groups.rules.registry import Args, Ctx, aten, register


@register(aten("_scaled_dot_product_flash_attention_for_cpu.default"),
          aten("_scaled_dot_product_flash_attention.default"),
          aten("_scaled_dot_product_efficient_attention.default"),
          aten("_scaled_dot_product_cudnn_attention.default"),
          aten("_scaled_dot_product_attention_math.default"),
          aten("_scaled_dot_product_fused_attention_overrideable.default"),
          aten("scaled_dot_product_attention.default"))
def sdpa(ctx: Ctx, a: Args) -> None:
    """q (..., L, E), k (..., S, E), v (..., S, Ev), mask (..., L, S) -> (..., L, Ev)."""
    q, k, v = a["query"], a["key"], a["value"]
    dq, dk, dv = ctx.dims(q), ctx.dims(k), ctx.dims(v)
    ctx.tie(dq[-1], dk[-1])  # q.k contracts head_dim
    ctx.tie(dk[-2], dv[-2])  # keys and values share the sequence
    out = a.outs()[0]
    # Leading dims (batch, heads) broadcast across q, k, v and the mask: this is
    # what ties the heads of q, k and v together.
    items = [(d[:-2], t.shape[:-2]) for d, t in ((dq, q), (dk, k), (dv, v))]
    mask = a.get("attn_mask")
    if mask is not None:
        dm = ctx.dims(mask)
        lead = max(0, len(mask.shape) - 2)
        items.append((dm[:lead], mask.shape[:lead]))
        if mask.shape[-2] != 1:
            ctx.tie(dm[-2], dq[-2])
        if mask.shape[-1] != 1:
            ctx.tie(dm[-1], dk[-2])
    batch = broadcast_dims(ctx, items, out.shape[:-2])
    ctx.set(out, batch + [dq[-2], dv[-1]])
    for o in a.outs()[1:]:
        ctx.set(o, ctx.fresh(o.shape, "attention statistics"))
