"""The two modes that replay a trace during a rehearsal (:mod:`cpd.groups.rehearse`).

:class:`Replay` (a dispatch mode) pairs each aten op of the rehearsal with the
traced op it stands for, compares the size literals bound to channel dims with the
sizes those dims should have, and replaces outputs of the wrong shape by outputs of
the predicted one, so that one run reports every problem. :class:`Reshapes` (a
function mode) catches Python ``view``/``reshape`` calls that fail before any aten
op is dispatched, and reports them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from cpd.groups.rules.registry import Args, Binding
from cpd.trace.recorder import OpRecord, TensorRef


@dataclass
class Stale:
    """Element ``elem`` of ``binding`` was ``actual`` in the rehearsal, not ``expected``."""

    binding: Binding
    elem: int
    actual: int
    expected: int


@dataclass
class Findings:
    """What one rehearsal saw (op indices are trace record indices)."""

    stale: list[Stale] = field(default_factory=list)
    # (op, output leaf, actual shape, expected shape) of outputs with the wrong shape
    mismatched: list[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list)
    failed: list[int] = field(default_factory=list)  # ops that raised (outputs rebuilt)
    error: tuple[str, str] | None = None  # (module name, message) of a Python exception
    own_check: bool = False  # the exception came from the model's code, not torch's
    diverged_at: int | None = None  # first op that differs from the trace
    reached: int = 0  # ops replayed

    @property
    def clean(self) -> bool:
        return not (self.stale or self.mismatched or self.error)


class Diverged(Exception):
    def __init__(self, op: int) -> None:
        super().__init__(f"op {op} differs from the trace")
        self.op = op


# Ops torch picks between by memory layout (reshape views or copies, linear takes
# the addmm or the matmul path). Fake tensors can disagree with eager kernels on
# the strides of size-1 dims, and so on the choice: a rehearsal op may match a
# traced op of the same family, skip a few traced ops of the same module, or be an
# op the trace does not have. Anything else is a real divergence.
_VIEWS = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default,
          torch.ops.aten._reshape_alias.default}
_LOOKAHEAD = 6  # traced ops of the same module that may be skipped
_EXTRA = 6  # consecutive rehearsal ops with no traced counterpart


class Replay(TorchDispatchMode):
    """Checks each op against the trace, then lets the fake mode below compute it."""

    def __init__(self, records: list[OpRecord],
                 expect: Callable[[int, int, TensorRef], tuple[int, ...]],
                 checks: dict[int, list[tuple[Binding, int]]], size: Callable[[list[int]], int],
                 found: Findings) -> None:
        super().__init__()
        self.records, self.expect, self.checks, self.size = records, expect, checks, size
        self.found = found
        self.i = 0  # next traced op
        self.extra = 0
        self.stack = [""]  # running modules of the fake copy, by their names in the model

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # eager only: skip torch's dynamo wrapper (as the tracer does)

    def _match(self, func: Any, sizes: list[int] | None = None) -> int | None:
        """The traced op this one is: the next one, or a few further in the same module.

        A view further on must also agree on every size that pruning does not move (so
        a view taken by another code path is not mistaken for it)."""
        recs, j = self.records, self.i
        here = self.stack[-1]
        for k in range(j, min(len(recs), j + 1 + _LOOKAHEAD)):
            f = recs[k].func
            if recs[k].module != here or not (f is func or (f in _VIEWS and func in _VIEWS)):
                continue
            # The next traced op is taken as it comes: its sizes are what is checked.
            if k == j or sizes is None or func not in _VIEWS or self._fits(k, sizes):
                return k
        return None

    def _fits(self, k: int, sizes: list[int]) -> bool:
        traced = list(self.records[k].args[1])
        if len(traced) != len(sizes):
            return False
        moved = {b.keys[e][1] for b, e in self.checks.get(k, [])  # type: ignore[index]
                 if self.size(b.dims[e]) != b.value[e]}
        # -1: a Python reshape that failed before torch inferred its size
        return all(a in (t, -1) for i, (a, t) in enumerate(zip(sizes, traced)) if i not in moved)

    def expected_view(self, sizes: list[int]) -> int | None:
        """The traced view the failing Python reshape stands for."""
        return self._match(torch.ops.aten.view.default, sizes)

    def stale_view(self, j: int, sizes: list[int]) -> tuple[int, ...]:
        """Record the stale sizes of traced view ``j``; return its predicted shape."""
        for b, e in self.checks.get(j, []):
            _name, idx = b.keys[e]  # type: ignore[misc]
            want = self.size(b.dims[e])
            if 0 <= idx < len(sizes) and sizes[idx] != want:
                self.found.stale.append(Stale(b, e, sizes[idx], want))
        refs = [r for r in tree_flatten(self.records[j].out)[0] if isinstance(r, TensorRef)]
        return self.expect(j, 0, refs[0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func.namespace == "prim":  # fake tensors' own queries (prim.device)
            return func(*args, **kwargs)
        j = self._match(func, list(args[1]) if func in _VIEWS and len(args) > 1 else None)
        if j is None:
            self.extra += 1
            if self.extra > _EXTRA:
                raise Diverged(self.i)
            return func(*args, **kwargs)
        self.extra = 0
        self.i = j + 1
        rec = self.records[j]
        if j in self.checks:
            self._check_literals(j, func, args, kwargs)
        try:
            out = func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a stale size makes ops fail; reported via shapes
            out = None
        return self._conform(j, rec, out, args)

    def _check_literals(self, j: int, func: Any, args: tuple, kwargs: dict) -> None:
        values = Args(OpRecord(func, args, kwargs, None, "")).values
        for b, e in self.checks[j]:
            name, idx = b.keys[e]  # type: ignore[misc]
            got = values.get(name)
            if idx >= 0:
                got = got[idx] if isinstance(got, (list, tuple)) and idx < len(got) else None
            want = self.size(b.dims[e])
            if isinstance(got, int) and got != want:
                self.found.stale.append(Stale(b, e, got, want))

    def _conform(self, j: int, rec: OpRecord, out: Any, args: tuple) -> Any:
        """``out`` with every tensor of the wrong shape replaced by the predicted one."""
        if isinstance(out, torch.Tensor) and isinstance(rec.out, TensorRef):
            # One tensor out (most ops): no pytree round trip.
            want = self.expect(j, 0, rec.out)
            if tuple(out.shape) == want:
                return out
            self.found.mismatched.append((j, 0, tuple(out.shape), want))
            return torch.empty(want, dtype=out.dtype)
        refs, _ = tree_flatten(rec.out)
        if out is None:  # the op failed: rebuild its outputs from the trace
            dtype = next((a.dtype for a in tree_flatten(args)[0] if isinstance(a, torch.Tensor)),
                         torch.float32)
            it = iter(range(len(refs)))
            leaves = [torch.empty(self.expect(j, next(it), r), dtype=dtype)
                      if isinstance(r, TensorRef) else r for r in refs]
            self.found.failed.append(j)
            return tree_unflatten(leaves, tree_flatten(rec.out)[1])
        leaves, spec = tree_flatten(out)
        if len(leaves) != len(refs):
            return out
        fixed, k = [], 0
        for t, r in zip(leaves, refs):
            if isinstance(t, torch.Tensor) and isinstance(r, TensorRef):
                want = self.expect(j, k, r)
                if tuple(t.shape) != want:
                    self.found.mismatched.append((j, k, tuple(t.shape), want))
                    t = torch.empty(want, dtype=t.dtype)
                k += 1
            fixed.append(t)
        return tree_unflatten(fixed, spec)


_RESHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape}


class Reshapes(TorchFunctionMode):
    """``view``/``reshape`` whose sizes do not fit fail in Python, before any aten op
    reaches the replay: compare those sizes with the traced op they stand for, and
    continue with the predicted shape."""

    def __init__(self, replay: Replay) -> None:
        super().__init__()
        self.replay = replay

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func not in _RESHAPES or kwargs:
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except RuntimeError:
            x, rest = args[0], args[1:]
            sizes = list(rest[0]) if len(rest) == 1 and not isinstance(rest[0], int) else list(
                rest)
            j = self.replay.expected_view(sizes)
            if j is None or not all(isinstance(v, int) for v in sizes):
                raise
            want = self.replay.stale_view(j, sizes)
            return func(x, want)
