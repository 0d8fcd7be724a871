"""Sliding windows: ``F.unfold`` (im2col), ``F.fold`` (col2im), ``Tensor.unfold``.

``F.unfold`` turns (B, C, H, W) into (B, C*kh*kw, L): every channel owns kh*kw
consecutive rows, so the channel dim becomes the product (C, kh*kw) with C as the
outer factor. ``F.fold`` is the inverse: the input's (C, kh*kw) product gives C
back. Pruning C removes whole blocks of kh*kw rows; the kernel factor and the
window positions are never channels.
"""

from __future__ import annotations

from cpd.groups.rules.registry import Args, Ctx, aten, register


@register(aten("im2col.default"))
def im2col(ctx: Ctx, a: Args) -> None:
    """``F.unfold``: (B, C, H, W) -> (B, C*kh*kw, L) with C as the outer factor."""
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    kh, kw = a["kernel_size"]
    ctx.freeze(d[-2:], "spatial")
    k = ctx.space.dim(kh * kw, "unfold kernel")
    ctx.set(o, d[:-3] + [d[-3] + k, ctx.space.dim(o.shape[-1], "unfold positions")])


@register(aten("col2im.default"))
def col2im(ctx: Ctx, a: Args) -> None:
    """``F.fold``: (B, C*kh*kw, L) -> (B, C, H, W); C is the outer factor of the
    input's channel dim (as :func:`im2col` makes it)."""
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    kh, kw = a["kernel_size"]
    c = o.shape[-3]
    ctx.freeze([d[-1]], "fold positions")
    parts = ctx.space.cut(d[-2], "prod", [c, kh * kw]) if d[-2] else None
    if parts is None:
        ctx.freeze([d[-2]], "fold of reshaped channels")
        ctx.set(o, ctx.fresh(o.shape, "fold of reshaped channels"))
        return
    ctx.freeze([parts[1]], "fold kernel")
    spatial = [ctx.space.dim(s, "spatial") for s in o.shape[-2:]]
    ctx.set(o, d[:-2] + [parts[0]] + spatial)


@register(aten("unfold.default"))
def unfold(ctx: Ctx, a: Args) -> None:
    """``Tensor.unfold(dim, size, step)``: windows along one dim (spatial only)."""
    x, o = a["self"], a.outs()[0]
    d = list(ctx.dims(x))
    k = a["dimension"] % len(d) if d else 0
    ctx.freeze([d[k]], "unfold")
    d[k] = ctx.space.dim(o.shape[k], "unfold")
    ctx.set(o, d + [ctx.space.dim(o.shape[-1], "unfold")])
