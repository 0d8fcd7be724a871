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
        if tuple(o.shape) == tuple(out.shape[:-1]):  # logsumexp: one value per query
            ctx.set(o, batch + [dq[-2]])
        else:
            ctx.set(o, ctx.fresh(o.shape, "attention statistics"))


@register(aten("_native_multi_head_attention.default"))
def native_mha(ctx: Ctx, a: Args) -> None:
    """``nn.MultiheadAttention``'s fused path: qkv (3E, E) and proj (E, E).

    The module requires q's width to equal the embedding width E, so the
    embedding dim itself splits into (heads, head_dim): removing a head removes a
    block of the embedding (the in-projection joins the embedding group).
    """
    q, k, v = a["query"], a["key"], a["value"]
    w, pw = ctx.dims(a["qkv_weight"]), ctx.dims(a["proj_weight"])
    heads = int(a["num_head"])
    e = int(a["embed_dim"])
    sp = ctx.space
    parts = sp.cut(w[0], "prod", [3, heads, e // heads])
    out = a.outs()
    if parts is None:
        ctx.freeze(w + pw + ctx.dims(q), "multi-head attention with reshaped weights")
        ctx.set(out[0], ctx.fresh(out[0].shape, "multi-head attention"))
    else:
        ctx.freeze([parts[0]], "q/k/v split")
        qdim = parts[1] + parts[2]
        for t in (q, k, v):
            ctx.tie(ctx.dims(t)[-1], w[1])
        ctx.tie(w[1], qdim)  # q width == embedding width (the module asserts it)
        ctx.tie(pw[1], qdim)
        for name in ("qkv_bias",):
            if a.get(name) is not None:
                ctx.tie(ctx.dims(a[name])[0], w[0])
        if a.get("proj_bias") is not None:
            ctx.tie(ctx.dims(a["proj_bias"])[0], pw[0])
        ctx.set(out[0], ctx.dims(q)[:-1] + [pw[0]])
        ctx.bind(heads, [parts[1]], required=True, keys=[("num_head", -1)])
    for o in out[1:]:
        ctx.set(o, ctx.fresh(o.shape, "attention weights"))
