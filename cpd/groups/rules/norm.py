"""Normalisation ops: their affine parameters join the normalised channel dim."""

from __future__ import annotations

from cpd.groups.rules.registry import Args, Ctx, aten, register


def _tie_affine(ctx: Ctx, a: Args, channels: list[int], names: tuple[str, ...]) -> None:
    """Tie the per-channel parameters/buffers ``names`` (dim 0) to ``channels``."""
    for name in names:
        t = a.get(name)
        if t is not None:
            ctx.tie(channels, ctx.dims(t)[0])


def _rest(ctx: Ctx, a: Args) -> None:
    """Secondary outputs (saved mean/rstd) are never read by the model's forward."""
    for o in a.outs()[1:]:
        ctx.set(o, ctx.fresh(o.shape, "norm statistics"))


@register(aten("native_layer_norm.default"), aten("layer_norm.default"))
def layer_norm(ctx: Ctx, a: Args) -> None:
    x = a["input"]
    dx = ctx.dims(x)
    k = len(a["normalized_shape"])
    for name in ("weight", "bias"):
        t = a.get(name)
        if t is not None:
            for d1, d2 in zip(dx[-k:], ctx.dims(t)):
                ctx.tie(d1, d2)
    ctx.set(a.outs()[0], dx)
    ctx.bind(list(a["normalized_shape"]), dx[-k:],
             keys=[("normalized_shape", i) for i in range(k)])
    _rest(ctx, a)


@register(aten("native_batch_norm.default"), aten("_native_batch_norm_legit.default"),
          aten("_native_batch_norm_legit_no_training.default"),
          aten("_native_batch_norm_legit.no_stats"), aten("batch_norm.default"),
          aten("cudnn_batch_norm.default"), aten("miopen_batch_norm.default"),
          aten("_native_batch_norm_legit_functional.default"),
          aten("native_batch_norm_backward.default"))
def batch_norm(ctx: Ctx, a: Args) -> None:
    x = a["input"]
    dx = ctx.dims(x)
    _tie_affine(ctx, a, dx[1] if len(dx) > 1 else dx[0],
                ("weight", "bias", "running_mean", "running_var"))
    ctx.set(a.outs()[0], dx)
    _rest(ctx, a)


@register(aten("native_group_norm.default"), aten("group_norm.default"))
def group_norm(ctx: Ctx, a: Args) -> None:
    """Channels (G * C/G): the group count is an atom, so whole groups can go."""
    x = a["input"]
    dx = ctx.dims(x)
    g = int(a.get("group", a.get("num_groups", 1)))
    _tie_affine(ctx, a, dx[1], ("weight", "bias"))
    if g > 1:
        parts = ctx.space.cut(dx[1], "prod", [g, x.shape[1] // g])
        if parts is None:
            ctx.freeze([dx[1]], "group norm over reshaped channels")
        else:
            name = "group" if "group" in a.values else "num_groups"
            ctx.bind(g, [parts[0]], required=True, keys=[(name, -1)])
    ctx.set(a.outs()[0], dx)
    _rest(ctx, a)


@register(aten("_fused_rms_norm.default"), aten("rms_norm.default"))
def rms_norm(ctx: Ctx, a: Args) -> None:
    x = a["input"]
    dx = ctx.dims(x)
    k = len(a["normalized_shape"])
    w = a.get("weight")
    if w is not None:
        for d1, d2 in zip(dx[-k:], ctx.dims(w)):
            ctx.tie(d1, d2)
    ctx.set(a.outs()[0], dx)
    _rest(ctx, a)
