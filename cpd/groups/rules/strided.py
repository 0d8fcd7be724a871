"""``as_strided``: a view given by raw sizes and strides over the input's memory.

Torch emits it from its own decompositions (``as_strided_`` restrides the output of
an adaptive pool in Swin's and FocalNet's poolers). It addresses the input's
*storage*, not its logical layout; the trace records shapes, not strides, so the
rule assumes the input is laid out contiguously (what those decompositions
produce). Under that assumption a view whose strides are a row-major layout of
the whole input, in some order, is a reshape followed by a permutation, and its
channels map exactly. Anything else (gaps, overlaps, an offset) freezes.
"""

from __future__ import annotations

from math import prod

from cpd.groups.rules.registry import Args, Ctx, aten, register
from cpd.groups.space import Dim


@register(aten("as_strided.default"), aten("as_strided_.default"),
          aten("as_strided_copy.default"))
def as_strided(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    size, stride = list(a["size"]), list(a["stride"])
    dims = _as_permuted_reshape(ctx, x.shape, ctx.dims(x), size, stride,
                                a.get("storage_offset", 0) or 0)
    if dims is None:
        ctx.freeze(ctx.dims(x), "as_strided that is not a reshape or permutation")
        dims = ctx.fresh(o.shape, "as_strided that is not a reshape or permutation")
    ctx.set(o, dims)
    for i, (want, d) in enumerate(zip(size, dims)):  # the rehearsal checks them
        if d:
            ctx.bind(want, [d], keys=[("size", i)])


def _as_permuted_reshape(ctx: Ctx, shape: tuple[int, ...], dims: list[Dim], size: list[int],
                         stride: list[int], offset: int) -> list[Dim] | None:
    """Output dims when (size, stride) lays out all of a contiguous input of ``shape``
    row-major in some order; None otherwise."""
    big = sorted((i for i, s in enumerate(size) if s != 1), key=lambda i: -stride[i])
    span = 1
    for i in reversed(big):  # innermost first: each stride is the product inside it
        if stride[i] != span:
            return None
        span *= size[i]
    if offset != 0 or span != prod(shape):
        return None
    flat = [atom for d in dims for atom in d]
    parts = ctx.space.cut(flat, "prod", [size[i] for i in big])
    if parts is None:
        return None
    out: list[Dim] = [[] for _ in size]
    for i, part in zip(big, parts):
        out[i] = part
    return out
