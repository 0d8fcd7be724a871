"""Shape ops: reshape, permute, cat/split/slice, expand, repeat, indexing.

A reshape splits or merges atoms (768 -> 12 x 64 refines the channel atom into a
head atom and a head-dim atom); a cat or split cuts an atom into consecutive
pieces, so channel offsets are tracked without any per-architecture code.
"""

from __future__ import annotations

from cpd.groups.rules.registry import Args, Ctx, aten, register
from cpd.groups.space import Dim


def _nd(i: int, n: int) -> int:
    return i % n if n else 0


@register(aten("view.default"), aten("_unsafe_view.default"), aten("reshape.default"),
          aten("view_copy.default"), aten("_reshape_alias.default"))
def view(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    if 0 in x.shape:
        ctx.set(o, ctx.fresh(o.shape, "empty tensor"))
        return
    flat = [atom for d in ctx.dims(x) for atom in d]
    parts = ctx.space.cut(flat, "prod", list(o.shape))
    if parts is None:
        ctx.freeze(ctx.dims(x), "reshape that mixes channels with other dims")
        ctx.set(o, ctx.fresh(o.shape, "reshape that mixes channels with other dims"))
        return
    ctx.set(o, parts)
    name = "size" if a.get("size") else "shape"
    size = a.get(name) or []
    ins = ctx.dims(x)
    # Not required: aten-level views also come from torch's own decompositions
    # (matmul, linear, flatten) whose sizes are computed from shapes.
    for k, (want, part) in enumerate(zip(size, parts)):
        if isinstance(want, int) and want > 1:
            ctx.bind(want, [part], keys=[(name, k)], passthrough=[part in ins])


@register(aten("permute.default"), aten("permute_copy.default"))
def permute(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    ctx.set(o, [d[_nd(p, len(d))] for p in a["dims"]])


@register(aten("transpose.int"), aten("transpose_copy.int"), aten("transpose_.default"))
def transpose(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    d = list(ctx.dims(x))
    i, j = _nd(a["dim0"], len(d)), _nd(a["dim1"], len(d))
    d[i], d[j] = d[j], d[i]
    ctx.set(o, d)


@register(aten("t.default"), aten("numpy_T.default"))
def t(ctx: Ctx, a: Args) -> None:
    ctx.set(a.outs()[0], list(reversed(ctx.dims(a["self"]))))


@register(aten("unsqueeze.default"), aten("unsqueeze_.default"), aten("unsqueeze_copy.default"),
          aten("squeeze.default"), aten("squeeze.dim"), aten("squeeze.dims"),
          aten("squeeze_.dim"), aten("squeeze_copy.dim"), aten("flatten.using_ints"),
          aten("unflatten.int"))
def drop_or_add_unit_dims(ctx: Ctx, a: Args) -> None:
    """Size-1 dims carry no atoms, so (un)squeezing only re-lists the other dims."""
    x, o = a["self"], a.outs()[0]
    kept = [d for d, s in zip(ctx.dims(x), x.shape) if s != 1]
    it = iter(kept)
    try:
        ctx.set(o, [[] if s == 1 else next(it) for s in o.shape])
    except StopIteration:
        view(ctx, a)


@register(aten("expand.default"), aten("expand_copy.default"))
def expand(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    lead = len(o.shape) - len(x.shape)
    out: list[Dim] = [ctx.space.dim(s, "expanded dim") for s in o.shape[:lead]]
    for k, s in enumerate(x.shape):
        same = s == o.shape[lead + k]
        out.append(d[k] if same else ctx.space.dim(o.shape[lead + k], "expanded dim"))
    ctx.set(o, out)


@register(aten("repeat.default"))
def repeat(ctx: Ctx, a: Args) -> None:
    """``x.repeat(r)``: each repeated dim becomes (r, n), keeping n's channels inside."""
    x, o = a["self"], a.outs()[0]
    reps = list(a["repeats"])
    d = ctx.dims(x)
    lead = len(reps) - len(d)
    out = [ctx.space.dim(r, "repeat") for r in reps[:lead]]
    for k, r in enumerate(reps[lead:]):
        out.append((ctx.space.dim(r, "repeat") if r > 1 else []) + list(d[k]))
    ctx.set(o, out)


@register(aten("select.int"), aten("select_copy.int"))
def select(ctx: Ctx, a: Args) -> None:
    """Taking one index of a channel dim pins that dim: the index is a Python literal."""
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    k = _nd(a["dim"], len(d))
    ctx.freeze([d[k]], "indexed by a constant (select)")
    ctx.set(o, d[:k] + d[k + 1 :])


@register(aten("unbind.int"), aten("unbind_copy.int"))
def unbind(ctx: Ctx, a: Args) -> None:
    x = a["self"]
    d = ctx.dims(x)
    k = _nd(a["dim"], len(d))
    ctx.freeze([d[k]], "unbind")
    for o in a.outs():
        ctx.set(o, d[:k] + d[k + 1 :])


@register(aten("slice.Tensor"), aten("slice_copy.Tensor"))
def slice_(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    d = list(ctx.dims(x))
    k = _nd(a["dim"], len(d))
    n = x.shape[k]
    start = a.get("start", 0) or 0
    end = a.get("end", n)
    start, end = max(0, start + n if start < 0 else start), min(n, end + n if end < 0 else end)
    if o.shape[k] == n:
        ctx.set(o, d)
        return
    if a.get("step", 1) != 1 or o.shape[k] == 0:
        ctx.freeze([d[k]], "strided or empty slice")
        ctx.set(o, d[:k] + [ctx.space.dim(o.shape[k], "strided slice")] + d[k + 1 :])
        return
    sizes = [s for s in (start, end - start, n - end)]
    parts = ctx.space.split(d[k], [s for s in sizes if s])
    if parts is None:
        ctx.freeze([d[k]], "slice across a reshaped dim")
        ctx.set(o, d[:k] + [ctx.space.dim(o.shape[k], "slice")] + d[k + 1 :])
        return
    ctx.set(o, d[:k] + [parts[1 if start else 0]] + d[k + 1 :])
    # x[:, :end] receives its first size as ``end``; other bounds are derived.
    keys = [("end", -1), None] if not start else [None] * len(parts)
    ctx.bind([s for s in sizes if s], [p for p in parts], required=True, keys=keys)


@register(aten("split.Tensor"), aten("split_copy.Tensor"), aten("unsafe_split.Tensor"),
          aten("split_with_sizes.default"), aten("split_with_sizes_copy.default"),
          aten("unsafe_split_with_sizes.default"))
def split(ctx: Ctx, a: Args) -> None:
    x, outs = a["self"], a.outs()
    d = list(ctx.dims(x))
    k = _nd(a.get("dim", 0), len(d))
    sizes = [o.shape[k] for o in outs]
    if len(set(sizes)) == 1 and len(sizes) > 1 and "split_size" in a.values:
        # Equal pieces (chunk): a product (pieces, size) so they shrink together,
        # which is what code that computes the piece size from the shape expects.
        parts = ctx.space.cut(d[k], "prod", [len(sizes), sizes[0]])
        if parts is not None:
            ctx.freeze([parts[0]], "number of chunks")
            for o in outs:
                ctx.set(o, d[:k] + [parts[1]] + d[k + 1 :])
            ctx.bind(sizes[0], [parts[1]], keys=[("split_size", -1)])
            return
    parts = ctx.space.split(d[k], sizes) if d[k] else None
    if parts is None:
        ctx.freeze([d[k]], "split of a reshaped dim")
        for o in outs:
            ctx.set(o, d[:k] + [ctx.space.dim(o.shape[k], "split")] + d[k + 1 :])
        return
    for o, p in zip(outs, parts):
        ctx.set(o, d[:k] + [p] + d[k + 1 :])
    given = "split_sizes" in a.values  # else sizes derived from one split_size
    keys = [("split_sizes", i) if given else None for i in range(len(sizes))]
    ctx.bind(sizes, parts, required=True, keys=keys)


@register(aten("cat.default"), aten("concat.default"), aten("_cat.default"))
def cat(ctx: Ctx, a: Args) -> None:
    ins = [t for t in a["tensors"] if t.shape and 0 not in t.shape]
    o = a.outs()[0]
    if not ins:
        ctx.set(o, ctx.fresh(o.shape, "cat of empty tensors"))
        return
    n = len(o.shape)
    k = _nd(a.get("dim", 0), n)
    out = list(ctx.dims(ins[0]))
    for t in ins[1:]:
        for i, di in enumerate(ctx.dims(t)):
            if i != k:
                ctx.tie(out[i], di)
    sp = ctx.space
    pieces = [sp.merge(ctx.dims(t)[k]) if ctx.dims(t)[k] else sp.new(1) for t in ins]
    whole = sp.new(o.shape[k])
    for child, p in zip(sp.cut([whole], "sum", [t.shape[k] for t in ins]) or [], pieces):
        if child:
            sp.union(child[0], p)
    out[k] = [whole]
    ctx.set(o, out)


@register(aten("stack.default"))
def stack(ctx: Ctx, a: Args) -> None:
    ins, o = a["tensors"], a.outs()[0]
    k = _nd(a.get("dim", 0), len(o.shape))
    base = list(ctx.dims(ins[0]))
    for t in ins[1:]:
        for x, y in zip(base, ctx.dims(t)):
            ctx.tie(x, y)
    ctx.set(o, base[:k] + [ctx.space.dim(len(ins), "stack")] + base[k:])


def _index_like(ctx: Ctx, a: Args, dim: int | None) -> None:
    """Gather-style ops: the indexed dim is pinned, the others pass through."""
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    if dim is None or len(o.shape) != len(x.shape):
        ctx.freeze(d, "advanced indexing")
        ctx.set(o, ctx.fresh(o.shape, "advanced indexing"))
        return
    ctx.freeze([d[dim]], "indexed by a tensor")
    ctx.set(o, d[:dim] + [ctx.space.dim(o.shape[dim], "indexed")] + d[dim + 1 :])


@register(aten("index_select.default"))
def index_select(ctx: Ctx, a: Args) -> None:
    ctx.freeze(ctx.dims(a["index"]), "index tensor")
    _index_like(ctx, a, _nd(a["dim"], len(a["self"].shape)))


@register(aten("index.Tensor"), aten("_unsafe_index.Tensor"))
def index(ctx: Ctx, a: Args) -> None:
    """``x[..., idx, ...]`` with one tensor index: that dim is replaced by idx's dims."""
    x, o = a["self"], a.outs()[0]
    idx = list(a["indices"])
    used = [i for i, t in enumerate(idx) if t is not None]
    d = ctx.dims(x)
    if len(used) != 1:
        ctx.freeze(d, "advanced indexing")
        ctx.set(o, ctx.fresh(o.shape, "advanced indexing"))
        return
    k = used[0]
    ctx.freeze([d[k]], "indexed by a tensor")
    ctx.freeze(ctx.dims(idx[k]), "index tensor")
    new = ctx.fresh(idx[k].shape, "index")
    ctx.set(o, d[:k] + new + d[k + 1 :])


@register(aten("roll.default"), aten("flip.default"))
def roll(ctx: Ctx, a: Args) -> None:
    """Roll/flip permutes positions along its dims: fine for spatial dims only."""
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    ctx.freeze([d[_nd(k, len(d))] for k in a["dims"]], "roll/flip")
    ctx.set(o, d)


@register(aten("constant_pad_nd.default"), aten("reflection_pad1d.default"),
          aten("reflection_pad2d.default"), aten("replication_pad2d.default"),
          aten("reflection_pad3d.default"), aten("replication_pad3d.default"),
          aten("replication_pad1d.default"))
def pad(ctx: Ctx, a: Args) -> None:
    x, o = a["self"], a.outs()[0]
    d = list(ctx.dims(x))
    for k in range(len(d)):
        if x.shape[k] != o.shape[k]:
            ctx.freeze([d[k]], "padded")
            d[k] = ctx.space.dim(o.shape[k], "padded")
    ctx.set(o, d)


@register(aten("pixel_shuffle.default"), aten("pixel_unshuffle.default"))
def pixel_shuffle(ctx: Ctx, a: Args) -> None:
    """(C*r*r, H, W) <-> (C, H*r, W*r): the channel atom keeps its outer factor C."""
    x, o = a["self"], a.outs()[0]
    d = ctx.dims(x)
    sp = ctx.space
    if "upscale_factor" in a.values:
        r = a["upscale_factor"]
        c = sp.cut(d[-3], "prod", [o.shape[-3], r, r])
        if c is None:
            ctx.freeze(d, "pixel_shuffle")
            ctx.set(o, ctx.fresh(o.shape, "pixel_shuffle"))
            return
        ctx.freeze([c[1], c[2]], "pixel shuffle factor")
        ctx.set(o, list(d[:-3]) + [c[0], d[-2] + c[1], d[-1] + c[2]])
        return
    r = a["downscale_factor"]
    h = sp.cut(d[-2], "prod", [o.shape[-2], r])
    w = sp.cut(d[-1], "prod", [o.shape[-1], r])
    if h is None or w is None:
        ctx.freeze(d, "pixel_unshuffle")
        ctx.set(o, ctx.fresh(o.shape, "pixel_unshuffle"))
        return
    ctx.freeze([h[1], w[1]], "pixel unshuffle factor")
    ctx.set(o, list(d[:-3]) + [d[-3] + h[1] + w[1], h[0], w[0]])
