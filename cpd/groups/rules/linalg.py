"""Channel-owning ops: matmuls, linear, convolution, embedding.

A matmul ties its contraction dims (the input channels of a Linear, or q and k's
head_dim inside attention) and its batch dims (attention heads); a convolution
ties its input channels to its weight's input dim and, for grouped convs, ties the
*conv groups* of the input and output so that whole groups can be removed.
"""

from __future__ import annotations

from cpd.groups.rules.elementwise import broadcast
from cpd.groups.rules.registry import Args, Ctx, aten, register


@register(aten("mm.default"))
def mm(ctx: Ctx, a: Args) -> None:
    x, w = ctx.dims(a["self"]), ctx.dims(a["mat2"])
    ctx.tie(x[1], w[0])
    ctx.set(a.outs()[0], [x[0], w[1]])


@register(aten("addmm.default"), aten("addmm_.default"))
def addmm(ctx: Ctx, a: Args) -> None:
    x, w = ctx.dims(a["mat1"]), ctx.dims(a["mat2"])
    ctx.tie(x[1], w[0])
    o = a.outs()[0]
    ctx.set(o, [x[0], w[1]])
    # The bias broadcasts against the product: tie it to the output columns.
    ctx.set(o, broadcast(ctx, [o, a["self"]], o.shape))


@register(aten("bmm.default"))
def bmm(ctx: Ctx, a: Args) -> None:
    x, y = ctx.dims(a["self"]), ctx.dims(a["mat2"])
    ctx.tie(x[0], y[0])
    ctx.tie(x[2], y[1])
    ctx.set(a.outs()[0], [x[0], x[1], y[2]])


@register(aten("baddbmm.default"))
def baddbmm(ctx: Ctx, a: Args) -> None:
    x, y = ctx.dims(a["batch1"]), ctx.dims(a["batch2"])
    ctx.tie(x[0], y[0])
    ctx.tie(x[2], y[1])
    o = a.outs()[0]
    ctx.set(o, [x[0], x[1], y[2]])
    ctx.set(o, broadcast(ctx, [o, a["self"]], o.shape))


@register(aten("linear.default"))
def linear(ctx: Ctx, a: Args) -> None:
    x, w = ctx.dims(a["input"]), ctx.dims(a["weight"])
    ctx.tie(x[-1], w[1])
    o = a.outs()[0]
    ctx.set(o, x[:-1] + [w[0]])
    if a.get("bias") is not None:
        ctx.tie(w[0], ctx.dims(a["bias"])[0])


@register(aten("convolution.default"), aten("_convolution.default"), aten("conv1d.default"),
          aten("conv2d.default"), aten("conv3d.default"), aten("mkldnn_convolution.default"))
def convolution(ctx: Ctx, a: Args) -> None:
    _conv(ctx, a, bool(a.get("transposed", False)))


@register(aten("conv_transpose1d.default"), aten("conv_transpose2d.input"),
          aten("conv_transpose3d.input"))
def conv_transpose(ctx: Ctx, a: Args) -> None:
    _conv(ctx, a, True)


def _conv(ctx: Ctx, a: Args, transposed: bool) -> None:
    """Input (B, C, *S), weight (O, C/g, *K) or (C, O/g, *K) when transposed."""
    xr, wr, o = a["input"], a["weight"], a.outs()[0]
    x, w = ctx.dims(xr), ctx.dims(wr)
    g = int(a.get("groups", 1))
    sp = ctx.space
    c_in = xr.shape[1]
    c_out = o.shape[1]
    ctx.freeze(w[2:], "kernel size")
    ctx.freeze(x[2:], "spatial")  # positions, not channels: their count is the resolution
    if transposed:
        ctx.tie(x[1], w[0])
        per_in, per_out = w[0], w[1]
    else:
        per_in, per_out = x[1], w[0]
    if g == 1:
        if not transposed:
            ctx.tie(x[1], w[1])
            out_dim = w[0]
        else:
            out_dim = w[1]
    else:
        cin = sp.cut(per_in, "prod", [g, c_in // g])
        outd = sp.dim(c_out)
        cout = sp.cut(outd, "prod", [g, c_out // g])
        if cin is None or cout is None:
            ctx.freeze([x[1], *w[:2], outd], "grouped conv with reshaped channels")
            out_dim = outd
        else:
            ctx.tie(cin[0], cout[0])  # conv groups of input and output go together
            if transposed:
                ctx.tie(cout[1], w[1])
            else:
                ctx.tie(cin[1], w[1])
                ctx.tie(outd, per_out)
            out_dim = outd
            ctx.bind(g, [cin[0]], required=True, keys=[("groups", -1)])
    ctx.set(o, [x[0], out_dim] + [sp.dim(s, "spatial") for s in o.shape[2:]])
    b = a.get("bias")
    if b is not None:
        ctx.tie(ctx.dims(b)[0], out_dim)


@register(aten("embedding.default"))
def embedding(ctx: Ctx, a: Args) -> None:
    w, idx, o = a["weight"], a["indices"], a.outs()[0]
    dw = ctx.dims(w)
    ctx.freeze([dw[0]], "embedding rows")
    ctx.freeze(ctx.dims(idx), "index tensor")
    ctx.set(o, ctx.fresh(idx.shape, "embedding index") + [dw[1]])
