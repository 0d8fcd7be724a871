"""Pooling, resizing and reductions: channels pass, spatial/reduced dims don't."""

from __future__ import annotations

from cpd.groups.rules.registry import Args, Ctx, aten, register

_POOL = {
    1: "max_pool1d_with_indices max_pool1d avg_pool1d adaptive_avg_pool1d adaptive_max_pool1d "
    "_adaptive_avg_pool1d upsample_nearest1d upsample_linear1d _upsample_nearest_exact1d",
    2: "max_pool2d_with_indices max_pool2d avg_pool2d adaptive_avg_pool2d _adaptive_avg_pool2d "
    "adaptive_max_pool2d upsample_nearest2d upsample_bilinear2d upsample_bicubic2d "
    "_upsample_nearest_exact2d _upsample_bilinear2d_aa _upsample_bicubic2d_aa "
    "mkldnn_max_pool2d fractional_max_pool2d",
    3: "max_pool3d_with_indices max_pool3d avg_pool3d adaptive_avg_pool3d _adaptive_avg_pool3d "
    "adaptive_max_pool3d upsample_nearest3d upsample_trilinear3d _upsample_nearest_exact3d",
}


def _spatial(k: int):  # noqa: ANN202 - rule factory
    def rule(ctx: Ctx, a: Args) -> None:
        x = a.tensors()[0]
        d = ctx.dims(x)
        ctx.freeze(d[-k:], "spatial")
        for o in a.outs():
            if len(o.shape) != len(x.shape):
                ctx.set(o, ctx.fresh(o.shape, "pooling output"))
                continue
            ctx.set(o, d[:-k] + [ctx.space.dim(s, "spatial") for s in o.shape[-k:]])

    rule.__name__ = f"spatial{k}d"
    return rule


for _k, _names in _POOL.items():
    register(*[aten(n) for n in _names.split()])(_spatial(_k))


@register(*[aten(n) for n in """sum.dim_IntList mean.dim amax amin max.dim min.dim var.correction
std.correction var_mean.correction std_mean.correction argmax argmin logsumexp
norm.ScalarOpt_dim linalg_vector_norm prod.dim_int any.dim all.dim any.dims all.dims var.dim
std.dim nansum nanmean""".split()])
def reduce(ctx: Ctx, a: Args) -> None:
    """Reducing over a channel dim is fine structurally: fewer channels are summed."""
    x = a["self"] if "self" in a.values else a.tensors()[0]
    d = ctx.dims(x)
    dims = a.get("dim")
    n = len(d)
    if dims is None:
        red = set(range(n))
    else:
        red = {(k % n) for k in ([dims] if isinstance(dims, int) else dims)} if n else set()
    if isinstance(dims, (list, tuple)) and len(dims) == 0:
        red = set(range(n))
    keep = a.get("keepdim", False)
    for o in a.outs():
        if keep:
            ctx.set(o, [[] if i in red else d[i] for i in range(n)])
        else:
            ctx.set(o, [d[i] for i in range(n) if i not in red])


@register(*[aten(n) for n in "sum.default mean.default max.default min.default "
            "prod.default any.default all.default norm.Scalar count_nonzero.default".split()])
def reduce_all(ctx: Ctx, a: Args) -> None:
    for o in a.outs():
        ctx.set(o, ctx.fresh(o.shape, "full reduction"))


@register(aten("topk.default"), aten("sort.default"), aten("sort.stable"), aten("argsort.default"),
          aten("cummax.default"), aten("kthvalue.default"))
def sort_like(ctx: Ctx, a: Args) -> None:
    """Sorting along a dim permutes its positions: pin it."""
    x = a["self"]
    d = list(ctx.dims(x))
    k = (a.get("dim", -1)) % max(1, len(d))
    ctx.freeze([d[k]], "sorted")
    for o in a.outs():
        dd = list(d)
        dd[k] = ctx.space.dim(o.shape[k], "sorted")
        ctx.set(o, dd)
