"""Element-wise ops: unary ops keep channels, broadcasting ops tie them."""

from __future__ import annotations

from cpd.groups.rules.registry import Args, Ctx, aten, register
from cpd.groups.space import Dim
from cpd.trace.recorder import TensorRef

_UNARY = """abs neg relu relu_ gelu gelu_ silu silu_ sigmoid sigmoid_ tanh tanh_ hardswish
hardswish_ hardsigmoid hardsigmoid_ hardtanh hardtanh_ leaky_relu leaky_relu_ elu elu_
softplus mish mish_ exp exp_ log log_ sqrt sqrt_ rsqrt rsqrt_ reciprocal sin cos erf erf_
clamp clamp_ clamp_min clamp_min_ clamp_max clamp_max_ clone _to_copy detach alias
sign floor ceil round trunc fill_ zero_ zeros_like ones_like empty_like full_like rand_like
randn_like logical_not bitwise_not isnan isinf nan_to_num bernoulli_ uniform_ normal_
_softmax _log_softmax cumsum exponential_ log1p expm1 square abs_ neg_ threshold
native_dropout dropout _masked_scale sgn celu selu log_sigmoid_forward silu_backward
hardswish_backward lift_fresh_copy""".split()

_SCALAR_VARIANTS = """add.Scalar add_.Scalar sub.Scalar sub_.Scalar mul.Scalar mul_.Scalar
div.Scalar div_.Scalar rsub.Scalar pow.Tensor_Scalar pow_.Scalar eq.Scalar ne.Scalar lt.Scalar
le.Scalar gt.Scalar ge.Scalar remainder.Scalar fmod.Scalar floor_divide.Scalar
div.Scalar_mode bitwise_and.Scalar bitwise_or.Scalar""".split()

_BINARY = """add.Tensor add_.Tensor sub.Tensor sub_.Tensor mul.Tensor mul_.Tensor div.Tensor
div_.Tensor div.Tensor_mode div_.Tensor_mode maximum.default minimum.default pow.Tensor_Tensor
eq.Tensor ne.Tensor lt.Tensor le.Tensor gt.Tensor ge.Tensor where.self masked_fill.Scalar
masked_fill.Tensor masked_fill_.Scalar masked_fill_.Tensor lerp.Scalar lerp.Tensor
addcmul.default addcdiv.default addcmul_.default addcdiv_.default rsub.Tensor atan2.default
floor_divide.default remainder.Tensor logical_and.default logical_or.default bitwise_and.Tensor
bitwise_or.Tensor copy_.default pow.Scalar fmod.Tensor hypot.default xlogy.Tensor""".split()


@register(*[aten(n) for n in _UNARY], *[aten(n) for n in _SCALAR_VARIANTS])
def unary(ctx: Ctx, a: Args) -> None:
    """Output(s) of the input's shape carry the input's channels."""
    src = next((t for t in a.tensors()), None)
    for o in a.outs():
        if src is None:
            ctx.set(o, ctx.fresh(o.shape, "created from Python values"))
        else:
            ctx.same(src, o)


def broadcast(ctx: Ctx, inputs: list[TensorRef], out_shape: tuple[int, ...]) -> list[Dim]:
    """Tie broadcast-aligned dims of ``inputs`` and return the output's dims."""
    return broadcast_dims(ctx, [(ctx.dims(t), t.shape) for t in inputs], out_shape)


def broadcast_dims(
    ctx: Ctx, items: list[tuple[list[Dim], tuple[int, ...]]], out_shape: tuple[int, ...]
) -> list[Dim]:
    """Broadcasting on (dims, shape) pairs: dims align from the right, and a size-1
    dim broadcasts and couples nothing. Returns the output's dims."""
    n = len(out_shape)
    out: list[Dim] = []
    for i in range(n):
        cands: list[Dim] = []
        for dims, shape in items:
            k = i - (n - len(shape))
            if k >= 0 and shape[k] != 1:
                cands.append(dims[k])
        if out_shape[i] == 1 or not cands:
            out.append(ctx.space.dim(out_shape[i], "broadcast of a size-1 dim"))
            continue
        for c in cands[1:]:
            ctx.tie(cands[0], c)
        out.append(cands[0])
    return out


@register(*[aten(n) for n in _BINARY])
def binary(ctx: Ctx, a: Args) -> None:
    ins = a.tensors()
    for o in a.outs():
        dims = broadcast(ctx, ins, o.shape)
        # In-place ops (add_, copy_) keep the destination's id: its label is the tie.
        ctx.set(o, dims)


@register(aten("prelu"), aten("_prelu_kernel"))
def prelu(ctx: Ctx, a: Args) -> None:
    x, w = a["self"], a["weight"]
    dx = ctx.dims(x)
    if w.shape and w.shape[0] > 1 and len(x.shape) >= 2:
        ctx.tie(dx[1 if len(x.shape) > 1 else 0], ctx.dims(w)[0])
    for o in a.outs():
        ctx.same(x, o)


@register(aten("glu"))
def glu(ctx: Ctx, a: Args) -> None:
    """GLU halves a dim: both halves shrink together, like ``chunk(2)``."""
    x, dim = a["self"], a["dim"] % len(a["self"].shape)
    dx = ctx.dims(x)
    parts = ctx.space.cut(dx[dim], "prod", [2, x.shape[dim] // 2])
    o = a.outs()[0]
    if parts is None:
        ctx.freeze(dx, "glu on a dim that cannot be halved")
        ctx.set(o, ctx.fresh(o.shape, "glu"))
        return
    ctx.freeze([parts[0]], "glu halves")
    ctx.set(o, dx[:dim] + [parts[1]] + dx[dim + 1 :])


@register(
    aten("_local_scalar_dense"), aten("equal"), aten("is_nonzero"), aten("is_same_size"),
    aten("allclose"), aten("_assert_async"),
)
def no_output(ctx: Ctx, a: Args) -> None:
    """Ops that read values but produce no channels (``.item()``, asserts)."""
    for o in a.outs():
        ctx.set(o, ctx.fresh(o.shape, "scalar"))
