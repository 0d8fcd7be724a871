"""The op-rule registry and the context a rule works in.

A rule is registered for exact aten overloads (``torch.ops.aten.add.Tensor``), never
by name patterns. It reads the labels (channel dimensions) of the op's inputs,
ties the ones the op couples, and sets the labels of its outputs. An op with no
rule freezes every channel it touches and is reported by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten

from cpd.groups.space import Dim, Space
from cpd.trace.recorder import OpRecord, TensorRef

Rule = Callable[["Ctx", "Args"], None]
RULES: dict[torch._ops.OpOverload, Rule] = {}


def register(*ops: Any) -> Callable[[Rule], Rule]:
    """Register a rule for exact aten overloads (packets expand to all overloads).

    Raises:
        ValueError: an overload already has a rule (one home per op).
    """

    def deco(fn: Rule) -> Rule:
        for op in ops:
            if op is None:
                continue
            overloads = (
                [getattr(op, o) for o in op.overloads()]
                if isinstance(op, torch._ops.OpOverloadPacket)
                else [op]
            )
            for ov in overloads:
                if ov in RULES:
                    raise ValueError(f"duplicate rule for {ov}")
                RULES[ov] = fn
        return fn

    return deco


def aten(name: str) -> Any:
    """``torch.ops.aten.<name>`` or None when this torch build lacks it."""
    packet, _, overload = name.partition(".")
    p = getattr(torch.ops.aten, packet, None)
    if p is None or not overload:
        return p
    return getattr(p, overload, None) if overload in p.overloads() else None


class Args:
    """An op's arguments by schema name, with defaults filled in."""

    def __init__(self, rec: OpRecord) -> None:
        self.rec = rec
        self.values: dict[str, Any] = {}
        schema = rec.func._schema
        pos = list(rec.args)
        for i, a in enumerate(schema.arguments):
            if i < len(pos) and not a.kwarg_only:
                self.values[a.name] = pos[i]
            elif a.name in rec.kwargs:
                self.values[a.name] = rec.kwargs[a.name]
            elif a.has_default_value():
                self.values[a.name] = a.default_value
        self.out = rec.out

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        v = self.values.get(name, default)
        return default if v is None else v

    def tensors(self) -> list[TensorRef]:
        return [x for x in tree_flatten(list(self.values.values()))[0] if isinstance(x, TensorRef)]

    def outs(self) -> list[TensorRef]:
        return [x for x in tree_flatten(self.out)[0] if isinstance(x, TensorRef)]


@dataclass
class Binding:
    """A size literal an op received inside ``module``, and the dims it sized.

    ``dims`` lists one channel dimension per element of ``value`` (one for an int).
    Later stages match these against the module's integer attributes, so that
    attributes like ``num_heads`` follow the pruned sizes.
    """

    module: str
    value: tuple[int, ...]
    dims: list[Dim]
    required: bool = False  # a literal the forward reuses: unmatched -> freeze its dims
    op: int = -1  # index of the op in the trace (the rehearsal re-reads it there)
    # Per element, where the op received it: (argument name, list index or -1 for a
    # scalar argument); None when the rule derived the value (slice lengths).
    keys: tuple[tuple[str, int] | None, ...] = ()
    # The element sizes a dim the op's input already has (``x.view(B, C, -1)`` with C
    # = x.shape[1]): most likely read from that shape, not from an attribute.
    passthrough: tuple[bool, ...] = ()


@dataclass
class Ctx:
    """State shared by the rules while walking one trace."""

    space: Space
    labels: dict[int, list[Dim]] = field(default_factory=dict)
    bindings: list[Binding] = field(default_factory=list)
    unknown: dict[str, int] = field(default_factory=dict)
    module: str = ""
    op: int = -1  # index of the op being walked
    # (module, owner, attr, index) -> dims that attribute must follow (from the rehearsal)
    forced: dict[tuple[str, str, str, int], list[Dim]] = field(default_factory=dict)
    consumed: dict[str, list[Dim]] = field(default_factory=dict)  # module -> its input dims

    def dims(self, x: TensorRef) -> list[Dim]:
        """Channel dims of ``x``; a tensor never seen before gets frozen dims."""
        d = self.labels.get(x.tid)
        if d is None or len(d) != len(x.shape):
            d = self.fresh(x.shape, "tensor from outside the traced model")
            self.labels[x.tid] = d
        return d

    def set(self, x: TensorRef, dims: list[Dim]) -> None:
        self.labels[x.tid] = dims

    def fresh(self, shape: tuple[int, ...], reason: str | None) -> list[Dim]:
        return [self.space.dim(s, reason) for s in shape]

    def tie(self, a: Dim, b: Dim) -> None:
        self.space.union_dims(a, b)

    def freeze(self, dims: list[Dim], reason: str) -> None:
        for d in dims:
            self.space.freeze(d, reason)

    def same(self, src: TensorRef, dst: TensorRef) -> None:
        """``dst`` has ``src``'s channels (shape-preserving ops)."""
        if src.shape == dst.shape:
            self.set(dst, self.dims(src))
        else:
            self.set(dst, self.fresh(dst.shape, f"shape changed by {self.module or 'op'}"))

    def bind(self, value: int | list[int], dims: list[Dim], required: bool = False,
             keys: list[tuple[str, int] | None] | None = None,
             passthrough: list[bool] | None = None) -> None:
        """Record that ``value`` (a size literal of this op) sized ``dims``.

        ``required`` marks literals the op needs to stay in step with the channel
        count (split sizes, slice bounds, reshape sizes): if no module attribute
        can carry the new value, the dims are frozen rather than pruned wrongly.
        ``keys`` says where the op received each element (see :class:`Binding`).
        """
        vals = tuple(value) if isinstance(value, (list, tuple)) else (int(value),)
        if any(d for d in dims):
            self.bindings.append(Binding(
                self.module, vals, dims, required, op=self.op,
                keys=tuple(keys) if keys is not None else (None,) * len(vals),
                passthrough=tuple(passthrough or (False,) * len(vals))))
