"""Run a traced forward's expensive ops for their shapes only.

Comb needs the shapes and integer arguments of every op, not the values of the
activations; convolutions, matmuls and attention kernels are nearly all of a
forward's time (about 90 % of ResNet-50's, 95 % of ViT-B/16's on a CPU). So on
tensors computed from the model's inputs, the tracer replaces those ops by zeros
of the shape, dtype and strides the CPU kernel returns. :data:`SHAPE_ONLY` maps each
such aten overload to a function that builds that output, or returns None when the
arguments are outside what it reproduces exactly (then the op runs for real).
Formulas rather than torch's meta kernels: those import sympy and torch._dynamo on
first use, about two seconds of a fresh process.

Values still reach Python in three ways, each handled by the tracer
(:mod:`cpd.trace.recorder`):

* an op whose output depends on values (``.item()``, ``bool(t)``, ``nonzero``,
  boolean masks: torch tags them ``data_dependent_output`` or
  ``dynamic_output_shape``) reads a zeroed tensor: the trace is redone with every
  op computed (:func:`reads_values`);
* the model keeps a zeroed tensor after the forward (a cache, an attribute): the
  trace is redone with every op computed, so that what it keeps is real;
* ``tolist()`` / ``numpy()`` read memory without dispatching an op; a model that
  branches on those would take the branch of zeros (not detected).

Tensors not derived from the inputs (position tables, caches computed from
weights) are always computed, so nothing the model derives from its weights alone
is ever zeros.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

aten = torch.ops.aten
ShapeFn = Callable[..., Any]
_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _zeros(shape: tuple[int, ...], stride: tuple[int, ...] | None, like: torch.Tensor,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """Zeros (not garbage: later ops on them must not see NaN or inf)."""
    if stride is None:
        return torch.zeros(shape, dtype=dtype or like.dtype, device=like.device)
    return torch.empty_strided(shape, stride, dtype=dtype or like.dtype,
                               device=like.device).zero_()


def _plain(*ts: torch.Tensor | None) -> bool:
    """CPU floating tensors of one dtype (the kernels these formulas describe)."""
    real = [t for t in ts if t is not None]
    return all(t.device.type == "cpu" and t.dtype in _FLOATS and t.dtype == real[0].dtype
               for t in real)


def _dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: some permutation of the dims is contiguous."""
    expected = 1
    for stride, size in sorted((s, n) for n, s in zip(t.shape, t.stride()) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def channels_last_strides(t: torch.Tensor) -> bool:
    """c10's ``is_channels_last_strides_2d/3d`` (what ``suggest_memory_format`` reads):
    whether torch takes ``t`` for channels-last, ambiguous cases counting as not."""
    if t.dim() not in (4, 5):
        return False
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    low = 0
    for d in ((1, 3, 2, 0) if t.dim() == 4 else (1, 4, 3, 2, 0)):
        if sizes[d] == 0 or strides[d] < low or (d == 0 and low == strides[1]):
            return False
        low = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _convolution(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                 stride: list[int], padding: list[int], dilation: list[int],
                 transposed: bool, output_padding: list[int], groups: int) -> Any:
    # Channels-last inputs or weights make the CPU backends pick channels-last
    # outputs by rules that differ per backend: those run for real.
    if (x.dim() not in (3, 4, 5) or w.dim() != x.dim() or not _plain(x, w, bias)
            or channels_last_strides(x) or channels_last_strides(w) or x.shape[0] == 0):
        return None
    k = w.shape[2:]
    if transposed:
        if x.shape[1] != w.shape[0]:
            return None
        cout = w.shape[1] * groups
        spatial = [(n - 1) * s - 2 * p + d * (kk - 1) + op + 1 for n, kk, s, p, d, op
                   in zip(x.shape[2:], k, stride, padding, dilation, output_padding)]
    else:
        if x.shape[1] != w.shape[1] * groups:
            return None
        cout = w.shape[0]
        spatial = [(n + 2 * p - d * (kk - 1) - 1) // s + 1
                   for n, kk, s, p, d in zip(x.shape[2:], k, stride, padding, dilation)]
    if min(spatial) <= 0 or len(spatial) != len(k):
        return None
    return _zeros((x.shape[0], cout, *spatial), None, x)


def _mm(a: torch.Tensor, b: torch.Tensor) -> Any:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or not _plain(a, b):
        return None
    return _zeros((a.shape[0], b.shape[1]), None, a)


def _addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1,
           alpha: float = 1) -> Any:
    out = _mm(a, b)
    return out if out is not None and _fits(c, out.shape, a) else None


def _bmm(a: torch.Tensor, b: torch.Tensor) -> Any:
    if (a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]
            or not _plain(a, b)):
        return None
    return _zeros((a.shape[0], a.shape[1], b.shape[2]), None, a)


def _baddbmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1,
             alpha: float = 1) -> Any:
    out = _bmm(a, b)
    return out if out is not None and _fits(c, out.shape, a) else None


def _fits(c: torch.Tensor, shape: torch.Size, like: torch.Tensor) -> bool:
    """``c`` (the added term) broadcasts to ``shape`` and has ``like``'s dtype."""
    if not _plain(c, like) or c.dim() > len(shape):
        return False
    return all(n in (1, m) for n, m in zip(reversed(c.shape), reversed(shape)))


def _sdpa_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
              is_causal: bool = False, *, attn_mask: torch.Tensor | None = None,
              scale: float | None = None) -> Any:
    # The CPU flash kernel allocates its output like the query (same strides) and
    # the log-sum-exp as (B, L, H) transposed to (B, H, L), in float32 for half types.
    if (q.dim() != 4 or k.dim() != 4 or v.dim() != 4 or not _plain(q, k, v) or not _dense(q)
            or not q.shape[-1] == k.shape[-1] == v.shape[-1]):
        return None
    b, h, n, _ = q.shape
    lse_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    lse = torch.zeros((b, n, h), dtype=lse_dtype, device=q.device).transpose(1, 2)
    return _zeros(tuple(q.shape), q.stride(), q), lse


def _op(name: str) -> torch._ops.OpOverload | None:
    """``aten.<packet>.<overload>``, or None where this torch build lacks it."""
    packet, _, overload = name.partition(".")
    p = getattr(aten, packet, None)
    return getattr(p, overload) if p is not None and overload in p.overloads() else None


def _overloads(fns: dict[str, ShapeFn]) -> dict[torch._ops.OpOverload, ShapeFn]:
    return {op: fn for name, fn in fns.items() if (op := _op(name)) is not None}


#: Functional ops whose cost is their arithmetic, with the function that builds their
#: output for the shape only.
SHAPE_ONLY: dict[torch._ops.OpOverload, ShapeFn] = _overloads({
    "convolution.default": _convolution,
    "mm.default": _mm,
    "addmm.default": _addmm,
    "bmm.default": _bmm,
    "baddbmm.default": _baddbmm,
    "_scaled_dot_product_flash_attention_for_cpu.default": _sdpa_cpu,
})

_VALUE_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
# Indexing has a data-dependent shape only through boolean masks; integer indices
# (gathering tokens, relative-position tables) give the shape of the index.
_MASKABLE = frozenset(op for op in [_op("index.Tensor")] if op is not None)


class NeedsValues(Exception):
    """An op read values that the shape-only trace replaced by zeros."""

    def __init__(self, func: Any) -> None:
        super().__init__(f"{func} reads values of a tensor traced for its shape only")


def reads_values(func: torch._ops.OpOverload, zeroed: list[torch.Tensor]) -> bool:
    """Whether ``func``'s output (or its shape) depends on the values of ``zeroed``,
    the tensor arguments whose values were skipped."""
    if not any(t in func.tags for t in _VALUE_TAGS):
        return False
    if func in _MASKABLE:
        return any(t.dtype in (torch.bool, torch.uint8) for t in zeroed)
    return True


def run_for_shape(func: torch._ops.OpOverload, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any | None:
    """``func``'s output as zeros of the shape, dtype and strides the kernel gives;
    None when ``func`` is not in :data:`SHAPE_ONLY` or its arguments are outside
    what the formula reproduces (run it for real).

    Call from inside a dispatch mode's ``__torch_dispatch__`` (the mode is off there,
    so the zeros are not recorded).
    """
    fn = SHAPE_ONLY.get(func)
    if fn is None:
        return None
    try:
        return fn(*args, **kwargs)
    except TypeError:  # an argument form the formula does not take: compute it
        return None
